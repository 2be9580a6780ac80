/* A room's fan-out in C: outbox.offer_each's loop over a room's members, which queues one
 * frame on each member's outbox. Per member, the Python was most of what a room's message
 * cost. The outboxes' fields are read and written through their slots (Outbox has __slots__),
 * as the Python writes them; a sink that is no Outbox, a full outbox and the first outbox made
 * due are handed back to Python through the callables given. Without a compiler, the Python
 * loop (outbox.py) runs alone.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define DUE_WITH_A_ROOM 2

enum { FRAMES, QUEUED, LIMIT, WRITER, SCHEDULED, CLOSED, SLOT_COUNT };

/* A slot's place in an instance, from its member descriptor. */
static int
slot_offsets(PyObject *descriptors, Py_ssize_t *offsets)
{
    if (!PyTuple_Check(descriptors) || PyTuple_GET_SIZE(descriptors) != SLOT_COUNT) {
        PyErr_SetString(PyExc_TypeError, "the outbox's slots: _frames, _queued, _limit, _writer, _scheduled, closed");
        return -1;
    }
    for (int i = 0; i < SLOT_COUNT; i++) {
        PyObject *descriptor = PyTuple_GET_ITEM(descriptors, i);
        if (Py_TYPE(descriptor) != &PyMemberDescr_Type) {
            PyErr_SetString(PyExc_TypeError, "a slot's descriptor expected");
            return -1;
        }
        offsets[i] = ((PyMemberDescrObject *)descriptor)->d_member->offset;
    }
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

/* offer_each(sinks, data, outbox_type, slots, due, schedule, stalled) -> taken
 *
 * As outbox.offer_each: each outbox (an instance of outbox_type) under its limit and open
 * queues data, and its send is made due with a room's (appended to ``due``; ``schedule()`` is
 * called first when ``due`` is empty); a full one, open, is handed to ``stalled(sink)``;
 * another sink is offered data (``sink.offer(data)``). Answers how many took it. */
static PyObject *
offer_each(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7 || !PyBytes_Check(args[1]) || !PyType_Check(args[2]) || !PyList_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "offer_each(sinks, bytes, type, slots, list, schedule, stalled)");
        return NULL;
    }
    PyObject *data = args[1], *due = args[4], *schedule = args[5], *stalled = args[6];
    PyTypeObject *outbox_type = (PyTypeObject *)args[2];
    Py_ssize_t offsets[SLOT_COUNT];
    if (slot_offsets(args[3], offsets) < 0)
        return NULL;
    PyObject *sinks = PySequence_Fast(args[0], "sinks must be iterable");
    if (sinks == NULL)
        return NULL;
    Py_ssize_t size = PyBytes_GET_SIZE(data), taken = 0, count = PySequence_Fast_GET_SIZE(sinks);
    PyObject **items = PySequence_Fast_ITEMS(sinks);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *sink = items[i];
        if (!PyObject_TypeCheck(sink, outbox_type)) {
            PyObject *took = PyObject_CallMethod(sink, "offer", "O", data);
            if (took == NULL)
                goto fail;
            Py_ssize_t one = PyObject_IsTrue(took);
            Py_DECREF(took);
            if (one < 0)
                goto fail;
            taken += one;
            continue;
        }
        PyObject *queued = SLOT(sink, offsets[QUEUED]), *limit = SLOT(sink, offsets[LIMIT]);
        PyObject *closed = SLOT(sink, offsets[CLOSED]);
        if (queued == NULL || limit == NULL || closed == NULL) {
            PyErr_SetString(PyExc_AttributeError, "an outbox not yet made");
            goto fail;
        }
        int under = PyObject_RichCompareBool(queued, limit, Py_LT);
        if (under < 0)
            goto fail;
        if (!under) {
            if (closed == Py_False) {
                PyObject *done = PyObject_CallOneArg(stalled, sink);
                if (done == NULL)
                    goto fail;
                Py_DECREF(done);
            }
            continue;
        }
        if (closed != Py_False)
            continue;
        PyObject *frames = SLOT(sink, offsets[FRAMES]);
        if (frames == NULL || frames == Py_None) {
            PyObject *made = PyList_New(1);
            if (made == NULL)
                goto fail;
            Py_INCREF(data);
            PyList_SET_ITEM(made, 0, data);
            set_slot(sink, offsets[FRAMES], made);
        } else if (PyList_Append(frames, data) < 0) {
            goto fail;
        }
        Py_ssize_t now = PyLong_AsSsize_t(queued);
        if (now == -1 && PyErr_Occurred())
            goto fail;
        PyObject *grown = PyLong_FromSsize_t(now + size);
        if (grown == NULL)
            goto fail;
        set_slot(sink, offsets[QUEUED], grown);
        PyObject *writer = SLOT(sink, offsets[WRITER]), *scheduled = SLOT(sink, offsets[SCHEDULED]);
        int is_due = scheduled == NULL ? -1 : PyObject_IsTrue(scheduled);
        if (is_due < 0)
            goto fail;
        if (writer == Py_None && !is_due) {
            PyObject *with_a_room = PyLong_FromLong(DUE_WITH_A_ROOM);
            if (with_a_room == NULL)
                goto fail;
            set_slot(sink, offsets[SCHEDULED], with_a_room);
            if (PyList_GET_SIZE(due) == 0) {
                PyObject *done = PyObject_CallNoArgs(schedule);
                if (done == NULL)
                    goto fail;
                Py_DECREF(done);
            }
            if (PyList_Append(due, sink) < 0)
                goto fail;
        }
        taken++;
    }
    Py_DECREF(sinks);
    return PyLong_FromSsize_t(taken);
fail:
    Py_DECREF(sinks);
    return NULL;
}

static PyMethodDef methods[] = {
    {"offer_each", (PyCFunction)(void (*)(void))offer_each, METH_FASTCALL, "A room's frame, to its members' sinks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fanout", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    return PyModule_Create(&module);
}
