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

/* What one fan-out works with (see offer_each). */
typedef struct {
    PyObject *data, *due, *schedule, *stalled;
    PyTypeObject *outbox_type, *devices_type;
    Py_ssize_t offsets[SLOT_COUNT], devices_sinks, size;
} Fanout;

/* Queues the frame on one outbox, as outbox.offer_each does: 1 taken, 0 not, -1 an error. */
static int
offer_to_outbox(Fanout *fan, PyObject *sink)
{
    Py_ssize_t *offsets = fan->offsets;
    PyObject *queued = SLOT(sink, offsets[QUEUED]), *limit = SLOT(sink, offsets[LIMIT]);
    PyObject *closed = SLOT(sink, offsets[CLOSED]);
    if (queued == NULL || limit == NULL || closed == NULL) {
        PyErr_SetString(PyExc_AttributeError, "an outbox not yet made");
        return -1;
    }
    Py_ssize_t now = PyLong_AsSsize_t(queued), most = PyLong_AsSsize_t(limit);
    if ((now == -1 || most == -1) && PyErr_Occurred())
        return -1;
    if (now >= most) {
        if (closed == Py_False) {
            PyObject *done = PyObject_CallOneArg(fan->stalled, sink);
            if (done == NULL)
                return -1;
            Py_DECREF(done);
        }
        return 0;
    }
    if (closed != Py_False)
        return 0;
    PyObject *frames = SLOT(sink, offsets[FRAMES]);
    if (frames == NULL || frames == Py_None) {
        PyObject *made = PyList_New(1);
        if (made == NULL)
            return -1;
        Py_INCREF(fan->data);
        PyList_SET_ITEM(made, 0, fan->data);
        set_slot(sink, offsets[FRAMES], made);
    } else if (PyList_Append(frames, fan->data) < 0) {
        return -1;
    }
    PyObject *grown = PyLong_FromSsize_t(now + fan->size);
    if (grown == NULL)
        return -1;
    set_slot(sink, offsets[QUEUED], grown);
    PyObject *writer = SLOT(sink, offsets[WRITER]), *scheduled = SLOT(sink, offsets[SCHEDULED]);
    int is_due = scheduled == NULL ? -1 : PyObject_IsTrue(scheduled);
    if (is_due < 0)
        return -1;
    if (writer == Py_None && !is_due) {
        PyObject *with_a_room = PyLong_FromLong(DUE_WITH_A_ROOM);
        if (with_a_room == NULL)
            return -1;
        set_slot(sink, offsets[SCHEDULED], with_a_room);
        if (PyList_GET_SIZE(fan->due) == 0) {
            PyObject *done = PyObject_CallNoArgs(fan->schedule);
            if (done == NULL)
                return -1;
            Py_DECREF(done);
        }
        if (PyList_Append(fan->due, sink) < 0)
            return -1;
    }
    return 1;
}

/* The frame offered to each of sinks: how many took it, or -1. A user's devices (an instance
 * of devices_type, whose sinks are its sessions' outboxes) take it if any of theirs does, as
 * Devices.offer says; any other sink is asked (sink.offer). */
static Py_ssize_t
offer_to_each(Fanout *fan, PyObject *iterable, int within_devices)
{
    PyObject *sinks = PySequence_Fast(iterable, "sinks must be iterable");
    if (sinks == NULL)
        return -1;
    Py_ssize_t taken = 0;
    /* (The Python a sink's offer, a stall or the hub's scheduling calls may change the list:
     * its size and items are read afresh each time, and each sink held while offered.) */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(sinks); i++) {
        PyObject *sink = PySequence_Fast_GET_ITEM(sinks, i);
        Py_INCREF(sink);
        Py_ssize_t took;
        if (PyObject_TypeCheck(sink, fan->outbox_type)) {
            took = offer_to_outbox(fan, sink);
        } else if (!within_devices && Py_IS_TYPE(sink, fan->devices_type)) {
            PyObject *own = SLOT(sink, fan->devices_sinks);
            took = own == NULL ? 0 : offer_to_each(fan, own, 1);
            took = took > 0 ? 1 : took;
        } else {
            PyObject *answer = PyObject_CallMethod(sink, "offer", "O", fan->data);
            took = answer == NULL ? -1 : PyObject_IsTrue(answer);
            Py_XDECREF(answer);
        }
        Py_DECREF(sink);
        if (took < 0) {
            Py_DECREF(sinks);
            return -1;
        }
        taken += took;
    }
    Py_DECREF(sinks);
    return taken;
}

/* offer_each(sinks, data, outbox_type, slots, due, schedule, stalled, devices_type,
 *            devices_sinks) -> taken
 *
 * As outbox.offer_each: each outbox (an instance of outbox_type) under its limit and open
 * queues data, and its send is made due with a room's (appended to ``due``; ``schedule()`` is
 * called first when ``due`` is empty); a full one, open, is handed to ``stalled(sink)``; a
 * user's devices offer it to their own sinks (``devices_sinks``: the descriptor of their slot);
 * another sink is offered data (``sink.offer(data)``). Answers how many took it. */
static PyObject *
offer_each(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 9 || !PyBytes_Check(args[1]) || !PyType_Check(args[2]) || !PyList_Check(args[4])
        || !PyType_Check(args[7]) || Py_TYPE(args[8]) != &PyMemberDescr_Type) {
        PyErr_SetString(PyExc_TypeError,
                        "offer_each(sinks, bytes, type, slots, list, schedule, stalled, type, descriptor)");
        return NULL;
    }
    Fanout fan;
    fan.data = args[1];
    fan.due = args[4];
    fan.schedule = args[5];
    fan.stalled = args[6];
    fan.outbox_type = (PyTypeObject *)args[2];
    fan.devices_type = (PyTypeObject *)args[7];
    fan.devices_sinks = ((PyMemberDescrObject *)args[8])->d_member->offset;
    fan.size = PyBytes_GET_SIZE(args[1]);
    if (slot_offsets(args[3], fan.offsets) < 0)
        return NULL;
    Py_ssize_t taken = offer_to_each(&fan, args[0], 0);
    return taken < 0 ? NULL : PyLong_FromSsize_t(taken);
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
