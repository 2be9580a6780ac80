/* What the hub's compiled loops (_fanout.c, _relay.c) share of an outbox: its slots, in the
 * order each module is given their descriptors (known_outboxes, known_relay), how one is
 * read and written through them (Outbox has __slots__), and a frame appended to its queue, as
 * the Python appends one; how each interns the names it looks attributes up by, and adds to
 * an attribute (the metrics' counts). Each module keeps its own copy of what it was told.
 */
#ifndef CHATROOM_OUTBOX_H
#define CHATROOM_OUTBOX_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define DUE_ALONE 1
#define DUE_WITH_A_ROOM 2

/* The outbox's slots read and written, in the order their descriptors are given. */
enum {
    FRAMES, QUEUED, LIMIT, WRITER, SCHEDULED, CLOSED, STREAM, CAN_TRY, ROOM, IN_FLIGHT, IN_FLIGHT_SENT, LOOP,
    SLOT_COUNT
};

/* A slot's place in an instance, from its member descriptor: 0, or -1 with the error set. */
static int
slot_offset(PyObject *descriptor, Py_ssize_t *offset)
{
    if (Py_TYPE(descriptor) != &PyMemberDescr_Type) {
        PyErr_SetString(PyExc_TypeError, "a slot's descriptor expected");
        return -1;
    }
    *offset = ((PyMemberDescrObject *)descriptor)->d_member->offset;
    return 0;
}

#define SLOT(object, offset) (*(PyObject **)((char *)(object) + (offset)))

/* Sets a slot, as `object.slot = value` would (value's reference is taken). */
static void
set_slot(PyObject *object, Py_ssize_t offset, PyObject *value)
{
    PyObject *old = SLOT(object, offset);
    SLOT(object, offset) = value;
    Py_XDECREF(old);
}

/* The outboxes' type and their slots' places (see outbox_slots). */
static PyTypeObject *known_type;
static Py_ssize_t known_offsets[SLOT_COUNT];

/* The places of `count` slots, from a tuple of their descriptors: 0, or -1 with the error set. */
static int
slot_offsets(PyObject *slots, Py_ssize_t *offsets, Py_ssize_t count)
{
    if (!PyTuple_Check(slots) || PyTuple_GET_SIZE(slots) != count) {
        PyErr_SetString(PyExc_TypeError, "a tuple of slot descriptors expected");
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (slot_offset(PyTuple_GET_ITEM(slots, i), &offsets[i]) < 0)
            return -1;
    }
    return 0;
}

/* The type and slots of outboxes (a tuple of the descriptors, in the order above), kept:
 * 0, or -1 with the error set. */
static int
outbox_slots(PyObject *type, PyObject *slots)
{
    Py_ssize_t offsets[SLOT_COUNT];
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "the outboxes' type expected");
        return -1;
    }
    if (slot_offsets(slots, offsets, SLOT_COUNT) < 0)
        return -1;
    memcpy(known_offsets, offsets, sizeof offsets);
    Py_XSETREF(known_type, (PyTypeObject *)Py_NewRef(type));
    return 0;
}

/* A name the loops look attributes up by: where it is kept, and its text. */
typedef struct {
    PyObject **name;
    const char *text;
} Name;

#define COUNT_OF(array) ((Py_ssize_t)(sizeof(array) / sizeof((array)[0])))

/* Each name interned where it is kept, unless it is already: 0, or -1 with the error set. */
static int
intern_names(const Name *names, Py_ssize_t count)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        if (*names[i].name == NULL && (*names[i].name = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    }
    return 0;
}

/* object.<name> += amount (a count of the metrics, a room's last id): the new value, a new
 * reference, or NULL with the error set. */
static PyObject *
add_to(PyObject *object, PyObject *name, PyObject *amount)
{
    PyObject *now = PyObject_GetAttr(object, name);
    PyObject *after = now == NULL ? NULL : PyNumber_Add(now, amount);
    Py_XDECREF(now);
    if (after != NULL && PyObject_SetAttr(object, name, after) < 0)
        Py_CLEAR(after);
    return after;
}

/* Appends data to an open outbox's queue, of `queued` bytes so far (as the caller has just
 * read them), and counts it queued: 0, or -1. */
static int
append_frame(PyObject *outbox, PyObject *data, Py_ssize_t queued)
{
    PyObject *frames = SLOT(outbox, known_offsets[FRAMES]);
    if (frames == NULL || frames == Py_None) {
        PyObject *made = PyList_New(1);
        if (made == NULL)
            return -1;
        PyList_SET_ITEM(made, 0, Py_NewRef(data));
        set_slot(outbox, known_offsets[FRAMES], made);
    } else if (PyList_Append(frames, data) < 0) {
        return -1;
    }
    PyObject *grown = PyLong_FromSsize_t(queued + PyBytes_GET_SIZE(data));
    if (grown == NULL)
        return -1;
    set_slot(outbox, known_offsets[QUEUED], grown);
    return 0;
}

#endif
