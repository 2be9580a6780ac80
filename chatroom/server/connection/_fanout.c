/* A room's fan-out in C: fanout.offer_each's loop over a room's members, which queues one frame
 * on each member's outbox, and send_queued, the hub's send of what an outbox has queued (once
 * per member per round of the loop). Per member, the Python was most of what a room's message
 * cost. The outboxes' fields are read and written through their slots (see _outbox.h), as the
 * Python writes them; a sink that is no Outbox, a full outbox and the first outbox made due
 * are handed back to Python through the callables given. Without a compiler, the Python loop
 * (fanout.py, outbox.py) runs alone.
 */
#include "_outbox.h"

/* What the fan-out and send_queued know besides the outboxes' slots (see known_outboxes): the
 * counts that take the bytes sent, and the names of what send_queued calls. */
static PyObject *known_counts, *zero;
static PyObject *name_bytes_out, *name_try_send, *name_take_frames, *name_fail, *name_spawn_writer, *name_set;

/* known_outboxes(outbox_type, slots, counts): what offer_each and send_queued read and write,
 * given once. slots: the descriptors of _frames, _queued, _limit, _writer, _scheduled, closed,
 * _stream, _can_try_send, _room, _in_flight, _in_flight_sent and _loop; counts: what counts
 * bytes_out. */
static PyObject *
known_outboxes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "known_outboxes(type, slots (12 descriptors), counts)");
        return NULL;
    }
    static const Name names[] = {
        {&name_bytes_out, "bytes_out"}, {&name_try_send, "try_send"}, {&name_take_frames, "_take_frames"},
        {&name_fail, "_fail"},          {&name_spawn_writer, "_spawn_writer"}, {&name_set, "set"},
    };
    if (intern_names(names, COUNT_OF(names)) < 0 || (zero == NULL && (zero = PyLong_FromLong(0)) == NULL))
        return NULL;
    if (outbox_slots(args[0], args[1]) < 0)
        return NULL;
    Py_XSETREF(known_counts, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

/* What one fan-out works with (see offer_each). */
typedef struct {
    PyObject *data, *due, *schedule, *stalled;
    PyTypeObject *devices_type;
    Py_ssize_t devices_sinks;
} Fanout;

/* Queues the frame on one outbox, as fanout.offer_each does: 1 taken, 0 not, -1 an error. */
static int
offer_to_outbox(Fanout *fan, PyObject *sink)
{
    Py_ssize_t *offsets = known_offsets;
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
    if (append_frame(sink, fan->data, now) < 0)
        return -1;
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
        if (PyObject_TypeCheck(sink, known_type)) {
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

/* offer_each(sinks, data, due, schedule, stalled, devices_type, devices_sinks) -> taken
 *
 * As fanout.offer_each: each outbox (an instance of the type known_outboxes was given) under
 * its limit and open queues data, and its send is made due with a room's (appended to ``due``;
 * ``schedule()`` is called first when ``due`` is empty); a full one, open, is handed to
 * ``stalled(sink)``; a user's devices offer it to their own sinks (``devices_sinks``: the
 * descriptor of their slot); another sink is offered data (``sink.offer(data)``). Answers how
 * many took it. */
static PyObject *
offer_each(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7 || !PyBytes_Check(args[1]) || !PyList_Check(args[2]) || !PyType_Check(args[5])
        || known_type == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "offer_each(sinks, bytes, list, schedule, stalled, type, descriptor), its outboxes known");
        return NULL;
    }
    Fanout fan;
    fan.data = args[1];
    fan.due = args[2];
    fan.schedule = args[3];
    fan.stalled = args[4];
    fan.devices_type = (PyTypeObject *)args[5];
    if (slot_offset(args[6], &fan.devices_sinks) < 0)
        return NULL;
    Py_ssize_t taken = offer_to_each(&fan, args[0], 0);
    return taken < 0 ? NULL : PyLong_FromSsize_t(taken);
}

static PyObject *
call_method(PyObject *object, PyObject *name)
{
    PyObject *self[1] = {object};
    return PyObject_VectorcallMethod(name, self, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* The socket stream (see known_socket_stream): its type and the slot of its socket. */
static PyTypeObject *socket_stream_type;
static Py_ssize_t socket_stream_raw;
static PyObject *name_send;

/* known_socket_stream(stream_type, raw_slot): a stream of this type is tried by its raw
 * socket's send, as its try_send does: once per send of an outbox, per member of a room per
 * round, that method's Python frame was a tenth of a send. */
static PyObject *
known_socket_stream(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "known_socket_stream(type, the raw socket's slot descriptor)");
        return NULL;
    }
    if (slot_offset(args[1], &socket_stream_raw) < 0)
        return NULL;
    if (name_send == NULL && (name_send = PyUnicode_InternFromString("send")) == NULL)
        return NULL;
    Py_XSETREF(socket_stream_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_RETURN_NONE;
}

/* An outbox type whose frames are sent as what translate(frames, reader) makes of them (see
 * known_translation), and the slot of its reader. */
static PyTypeObject *translated_type;
static Py_ssize_t translated_reader;
static PyObject *translate;

/* known_translation(outbox_type, reader_slot, translate): an outbox of this type sends what
 * translate(frames, its reader) makes of its frames, counted as queued instead of them, or,
 * where that gives None, what its own _take_frames does. (The IRC port's: translate is
 * compiled too, and a room's member is sent its lines without a Python frame.) */
static PyObject *
known_translation(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyType_Check(args[0]) || !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "known_translation(type, the reader's slot descriptor, translate)");
        return NULL;
    }
    if (slot_offset(args[1], &translated_reader) < 0)
        return NULL;
    Py_XSETREF(translated_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(translate, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

/* The lines translate makes of an outbox's frames, taken; NULL with no error where it made
 * none (the outbox's _take_frames then takes them). */
static PyObject *
take_translated(PyObject *outbox, PyObject *frames)
{
    PyObject *reader = SLOT(outbox, translated_reader);
    if (reader == NULL)
        return NULL;
    PyObject *args[2] = {frames, Py_NewRef(reader)};
    PyObject *lines = PyObject_Vectorcall(translate, args, 2, NULL);
    Py_DECREF(reader);
    if (lines == NULL || lines == Py_None || !PyBytes_Check(lines)) {
        Py_XDECREF(lines);
        return NULL;
    }
    PyObject *size = PyLong_FromSsize_t(PyBytes_GET_SIZE(lines));
    if (size == NULL) {
        Py_DECREF(lines);
        return NULL;
    }
    set_slot(outbox, known_offsets[FRAMES], Py_NewRef(Py_None));
    set_slot(outbox, known_offsets[QUEUED], size);
    return lines;
}

/* The frames queued on outbox, taken: joined here for an outbox of the known type itself,
 * translated for one of the translated type where translate can, or else by the outbox's own
 * _take_frames. A new reference, or NULL. */
static PyObject *
take_frames(PyObject *outbox, PyObject *frames)
{
    if (Py_TYPE(outbox) == translated_type) {
        Py_INCREF(frames);
        PyObject *lines = take_translated(outbox, frames);
        Py_DECREF(frames);
        if (lines != NULL || PyErr_Occurred())
            return lines;
    }
    if (Py_TYPE(outbox) != known_type)
        return call_method(outbox, name_take_frames);
    Py_INCREF(frames);
    set_slot(outbox, known_offsets[FRAMES], Py_NewRef(Py_None));
    PyObject *data;
    if (PyList_GET_SIZE(frames) == 1) {
        data = Py_NewRef(PyList_GET_ITEM(frames, 0));
    } else {
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        data = empty == NULL ? NULL : _PyBytes_Join(empty, frames);
        Py_XDECREF(empty);
    }
    Py_DECREF(frames);
    return data;
}

/* What the stream takes of data now, as Outbox._try_send: the bytes sent (0 when it takes
 * none, or cannot be asked without waiting), -1 with the OSError set, -2 another error. */
static Py_ssize_t
try_send(PyObject *outbox, PyObject *data)
{
    if (SLOT(outbox, known_offsets[CAN_TRY]) != Py_True)
        return 0;
    PyObject *stream = SLOT(outbox, known_offsets[STREAM]), *answer;
    if (stream != NULL && Py_TYPE(stream) == socket_stream_type) {
        /* TcpStream.try_send, without its Python frame: its socket's own send */
        PyObject *raw = SLOT(stream, socket_stream_raw);
        if (raw == NULL)
            return 0; /* (never set: not a stream yet) */
        PyObject *args[2] = {raw, data};
        answer = PyObject_VectorcallMethod(name_send, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    } else {
        PyObject *args[2] = {stream, data};
        answer = PyObject_VectorcallMethod(name_try_send, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    if (answer == NULL) {
        if (PyErr_ExceptionMatches(PyExc_BlockingIOError)) {
            PyErr_Clear();
            return 0;
        }
        return PyErr_ExceptionMatches(PyExc_OSError) ? -1 : -2;
    }
    Py_ssize_t sent = PyLong_AsSsize_t(answer);
    Py_DECREF(answer);
    return sent < 0 ? -2 : sent;
}

/* Outbox._count_sent: the counts' bytes_out, the queue's size, a producer waiting for room. */
static int
count_sent(PyObject *outbox, Py_ssize_t sent)
{
    PyObject *more = PyLong_FromSsize_t(sent);
    PyObject *grown = more == NULL ? NULL : add_to(known_counts, name_bytes_out, more);
    Py_XDECREF(more);
    if (grown == NULL)
        return -1;
    Py_DECREF(grown);
    PyObject *queued = SLOT(outbox, known_offsets[QUEUED]);
    Py_ssize_t left = queued == NULL ? -1 : PyLong_AsSsize_t(queued);
    if (left == -1 && (queued == NULL || PyErr_Occurred())) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "an outbox not yet made");
        return -1;
    }
    PyObject *smaller = PyLong_FromSsize_t(left - sent);
    if (smaller == NULL)
        return -1;
    set_slot(outbox, known_offsets[QUEUED], smaller);
    PyObject *room = SLOT(outbox, known_offsets[ROOM]), *limit = SLOT(outbox, known_offsets[LIMIT]);
    if (room != NULL && room != Py_None && limit != NULL) {
        Py_ssize_t most = PyLong_AsSsize_t(limit);
        if (most == -1 && PyErr_Occurred())
            return -1;
        if (left - sent < most) {
            PyObject *done = call_method(room, name_set);
            if (done == NULL)
                return -1;
            Py_DECREF(done);
        }
    }
    return 0;
}

/* send_queued(outbox)
 *
 * Outbox._send_queued_for_hub (its Python, where this was not built): the hub's send of what
 * is queued, when one is due. What the socket takes now is sent; a writer greenlet is left
 * the rest (outbox._spawn_writer()); a failed send fails the outbox (outbox._fail()). */
static PyObject *
send_queued(PyObject *module, PyObject *outbox)
{
    (void)module;
    if (known_type == NULL || !PyObject_TypeCheck(outbox, known_type)) {
        PyErr_SetString(PyExc_TypeError, "send_queued(outbox), its outboxes known");
        return NULL;
    }
    Py_ssize_t *offsets = known_offsets;
    set_slot(outbox, offsets[SCHEDULED], Py_NewRef(zero));
    PyObject *frames = SLOT(outbox, offsets[FRAMES]);
    if (SLOT(outbox, offsets[WRITER]) != Py_None || frames == NULL || !PyList_Check(frames)
        || PyList_GET_SIZE(frames) == 0 || SLOT(outbox, offsets[CLOSED]) != Py_False)
        Py_RETURN_NONE;
    if (SLOT(outbox, offsets[IN_FLIGHT]) != Py_None)  /* (left part way: the rest goes first) */
        return call_method(outbox, name_spawn_writer);
    PyObject *data = take_frames(outbox, frames);
    if (data == NULL)
        return NULL;
    if (!PyBytes_Check(data)) {
        Py_DECREF(data);
        PyErr_SetString(PyExc_TypeError, "frames taken must be bytes");
        return NULL;
    }
    Py_ssize_t sent = try_send(outbox, data);
    if (sent == -2 || (sent >= 0 && count_sent(outbox, sent) < 0)) {
        Py_DECREF(data);
        return NULL;
    }
    if (sent == -1) {
        PyErr_Clear();
        Py_DECREF(data);
        return call_method(outbox, name_fail);
    }
    if (sent == PyBytes_GET_SIZE(data)) {
        Py_DECREF(data);
        Py_RETURN_NONE;
    }
    PyObject *sent_so_far = PyLong_FromSsize_t(sent);
    if (sent_so_far == NULL) {
        Py_DECREF(data);
        return NULL;
    }
    set_slot(outbox, offsets[IN_FLIGHT], data);
    set_slot(outbox, offsets[IN_FLIGHT_SENT], sent_so_far);
    return call_method(outbox, name_spawn_writer);
}

static PyMethodDef methods[] = {
    {"known_outboxes", (PyCFunction)(void (*)(void))known_outboxes, METH_FASTCALL, "The outboxes send_queued sends for."},
    {"send_queued", (PyCFunction)send_queued, METH_O, "The hub's send of what an outbox has queued."},
    {"known_socket_stream", (PyCFunction)(void (*)(void))known_socket_stream, METH_FASTCALL,
     "The stream tried by its socket's own send."},
    {"known_translation", (PyCFunction)(void (*)(void))known_translation, METH_FASTCALL,
     "An outbox type whose frames are sent as lines made of them."},
    {"offer_each", (PyCFunction)(void (*)(void))offer_each, METH_FASTCALL, "A room's frame, to its members' sinks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fanout", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    return PyModule_Create(&module);
}
