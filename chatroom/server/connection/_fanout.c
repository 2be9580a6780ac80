/* The hub's loops in C: outbox.offer_each's loop over a room's members, which queues one frame
 * on each member's outbox; send_queued, the hub's send of what an outbox has queued (once per
 * member per round of the loop); and answer_sendtos, the relay's common case (see relay.py).
 * Per member and per relayed message, the Python was most of what a message cost. The
 * outboxes' fields are read and written through their slots (Outbox has __slots__), as the
 * Python writes them; a sink that is no Outbox, a full outbox and the first outbox made due
 * are handed back to Python through the callables given, and a SENDTO off the common way to
 * the Python that answers it. Without a compiler, the Python runs alone.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define DUE_ALONE 1
#define DUE_WITH_A_ROOM 2

/* The outbox's slots read and written here, in the order known_outboxes is given them. */
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

/* What the fan-out and send_queued know of outboxes (see known_outboxes): their type, their
 * slots, the counts that take the bytes sent, and the names of what send_queued calls. */
static PyTypeObject *known_type;
static Py_ssize_t known_offsets[SLOT_COUNT];
static PyObject *known_counts, *zero, *due_alone, *send_queued_here;
static PyObject *name_bytes_out, *name_try_send, *name_take_frames, *name_fail, *name_spawn_writer, *name_set;
static PyObject *name_run_callback;

/* known_outboxes(outbox_type, slots, counts): what offer_each, send_queued and answer_sendtos
 * read and write, given once. slots: the descriptors of _frames, _queued, _limit, _writer,
 * _scheduled, closed, _stream, _can_try_send, _room, _in_flight, _in_flight_sent and _loop;
 * counts: what counts bytes_out. */
static PyObject *
known_outboxes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[0]) || !PyTuple_Check(args[1])
        || PyTuple_GET_SIZE(args[1]) != SLOT_COUNT) {
        PyErr_SetString(PyExc_TypeError, "known_outboxes(type, slots (12 descriptors), counts)");
        return NULL;
    }
    Py_ssize_t offsets[SLOT_COUNT];
    for (int i = 0; i < SLOT_COUNT; i++) {
        if (slot_offset(PyTuple_GET_ITEM(args[1], i), &offsets[i]) < 0)
            return NULL;
    }
    if (name_set == NULL) {
        zero = PyLong_FromLong(0);
        name_bytes_out = PyUnicode_InternFromString("bytes_out");
        name_try_send = PyUnicode_InternFromString("try_send");
        name_take_frames = PyUnicode_InternFromString("_take_frames");
        name_fail = PyUnicode_InternFromString("_fail");
        name_spawn_writer = PyUnicode_InternFromString("_spawn_writer");
        name_set = PyUnicode_InternFromString("set");
        name_run_callback = PyUnicode_InternFromString("run_callback");
        due_alone = PyLong_FromLong(DUE_ALONE);
        send_queued_here = PyObject_GetAttrString(module, "send_queued");
        if (zero == NULL || name_bytes_out == NULL || name_try_send == NULL || name_take_frames == NULL
            || name_fail == NULL || name_spawn_writer == NULL || name_set == NULL || name_run_callback == NULL
            || due_alone == NULL || send_queued_here == NULL)
            return NULL;
    }
    memcpy(known_offsets, offsets, sizeof offsets);
    Py_XSETREF(known_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(known_counts, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

/* Appends data to an open outbox's queue, of `queued` bytes so far: 0, or -1. */
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

/* What one fan-out works with (see offer_each). */
typedef struct {
    PyObject *data, *due, *schedule, *stalled;
    PyTypeObject *devices_type;
    Py_ssize_t devices_sinks;
} Fanout;

/* Queues the frame on one outbox, as outbox.offer_each does: 1 taken, 0 not, -1 an error. */
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
 * As outbox.offer_each: each outbox (an instance of the type known_outboxes was given) under
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
 * socket's send (None: it cannot be tried), as its try_send does: once per send of an
 * outbox, per member of a room per round, that method's Python frame was a tenth of a send. */
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
        /* SocketStream.try_send, without its Python frame: its socket's own send */
        PyObject *raw = SLOT(stream, socket_stream_raw);
        if (raw == NULL || raw == Py_None)
            return 0;
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
    PyObject *total = PyObject_GetAttr(known_counts, name_bytes_out);
    if (total == NULL)
        return -1;
    PyObject *more = PyLong_FromSsize_t(sent), *grown = NULL;
    if (more != NULL)
        grown = PyNumber_Add(total, more);
    Py_DECREF(total);
    Py_XDECREF(more);
    if (grown == NULL)
        return -1;
    int failed = PyObject_SetAttr(known_counts, name_bytes_out, grown);
    Py_DECREF(grown);
    PyObject *queued = SLOT(outbox, known_offsets[QUEUED]);
    Py_ssize_t left = queued == NULL ? -1 : PyLong_AsSsize_t(queued);
    if (failed || (left == -1 && (queued == NULL || PyErr_Occurred()))) {
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


/* --- The relay's common case ------------------------------------------------------------ */

/* The slots the relay reads, of the rules, of a SENDTO, of a session, of a user's devices and
 * of one device, in the order known_relay is given them. */
enum { RULES_NAME, RULES_HELD, RULES_REGISTERED, RULES_DEVICES, RULES_DIRECTORY, RULES_ACCOUNTS, RULES_SLOTS };
enum { SENDTO_RECIPIENT, SENDTO_TEXT, SENDTO_RAW, SENDTO_SLOTS };
enum { SESSION_RULES, SESSION_OUTBOX, SESSION_WANTS_IDS, SESSION_SLOTS };
enum { DEVICES_LIST, DEVICES_CONTACTS, DEVICES_AWAY, DEVICES_SLOTS };
enum { DEVICE_SESSION, DEVICE_SLOTS };

/* The most devices of one user the relay delivers to itself (the Python delivers to more). */
#define MOST_DEVICES 8

static PyTypeObject *rules_type, *sendto_type, *session_type, *devices_type;
static Py_ssize_t rules_offsets[RULES_SLOTS], sendto_offsets[SENDTO_SLOTS], session_offsets[SESSION_SLOTS];
static Py_ssize_t devices_offsets[DEVICES_SLOTS], device_offsets[DEVICE_SLOTS];
static PyObject *make_incoming, *make_direct_message, *next_id, *ok_reply, *name_find, *name_registered_names;
static Py_ssize_t most_text_chars;

static int
offsets_of(PyObject *slots, Py_ssize_t *offsets, Py_ssize_t count)
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

/* known_relay(rules_type, rules_slots, sendto_type, sendto_slots, session_type, session_slots,
 *             devices_type, devices_slots, device_slots, incoming_frame, direct_message_frame,
 *             next_id, ok, max_text_chars)
 *
 * What the relay reads, given once: the slots name, held, _registered, _devices, _directory
 * and _accounts of the rules; recipient, text and raw of a SENDTO; rules, _outbox and
 * wants_ids of a session (of this type or one made from it, whose deliver is its own);
 * _devices, contacts and away of a user's devices, and session of one device; the relayed
 * frames' makers, the maker of a message's id, the OK reply and a text's limit. */
static PyObject *
known_relay(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 14 || !PyType_Check(args[0]) || !PyType_Check(args[2]) || !PyType_Check(args[4])
        || !PyType_Check(args[6]) || !PyCallable_Check(args[9]) || !PyCallable_Check(args[10])
        || !PyCallable_Check(args[11]) || !PyBytes_Check(args[12]) || !PyLong_Check(args[13])) {
        PyErr_SetString(PyExc_TypeError, "known_relay(type, slots, type, slots, type, slots, type, slots, slots, "
                                         "incoming_frame, direct_message_frame, next_id, ok: bytes, max_text_chars: int)");
        return NULL;
    }
    Py_ssize_t most = PyLong_AsSsize_t(args[13]);
    if (most == -1 && PyErr_Occurred())
        return NULL;
    if (offsets_of(args[1], rules_offsets, RULES_SLOTS) < 0 || offsets_of(args[3], sendto_offsets, SENDTO_SLOTS) < 0
        || offsets_of(args[5], session_offsets, SESSION_SLOTS) < 0
        || offsets_of(args[7], devices_offsets, DEVICES_SLOTS) < 0
        || offsets_of(args[8], device_offsets, DEVICE_SLOTS) < 0)
        return NULL;
    if (name_find == NULL) {
        name_find = PyUnicode_InternFromString("find");
        name_registered_names = PyUnicode_InternFromString("registered_names");
        if (name_find == NULL || name_registered_names == NULL)
            return NULL;
    }
    most_text_chars = most;
    Py_XSETREF(rules_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(sendto_type, (PyTypeObject *)Py_NewRef(args[2]));
    Py_XSETREF(session_type, (PyTypeObject *)Py_NewRef(args[4]));
    Py_XSETREF(devices_type, (PyTypeObject *)Py_NewRef(args[6]));
    Py_XSETREF(make_incoming, Py_NewRef(args[9]));
    Py_XSETREF(make_direct_message, Py_NewRef(args[10]));
    Py_XSETREF(next_id, Py_NewRef(args[11]));
    Py_XSETREF(ok_reply, Py_NewRef(args[12]));
    Py_RETURN_NONE;
}

/* An outbox's queued size and limit, and whether it is open: 1 with room, 0 without (or
 * closed), -1 an error. */
static int
has_room(PyObject *outbox, Py_ssize_t *queued)
{
    PyObject *now = SLOT(outbox, known_offsets[QUEUED]), *limit = SLOT(outbox, known_offsets[LIMIT]);
    if (now == NULL || limit == NULL || SLOT(outbox, known_offsets[CLOSED]) != Py_False)
        return 0;
    Py_ssize_t most = PyLong_AsSsize_t(limit);
    *queued = PyLong_AsSsize_t(now);
    if ((most == -1 || *queued == -1) && PyErr_Occurred())
        return -1;
    return *queued < most;
}

/* Outbox.queue_for_hub on an outbox with room: queued, and its send made due by a callback of
 * its own unless one is due or a writer is at it. 0, or -1. */
static int
queue_for_hub(PyObject *outbox, PyObject *frame, Py_ssize_t queued)
{
    if (append_frame(outbox, frame, queued) < 0)
        return -1;
    PyObject *scheduled = SLOT(outbox, known_offsets[SCHEDULED]);
    int is_due = scheduled == NULL ? -1 : PyObject_IsTrue(scheduled);
    if (is_due < 0)
        return -1;
    if (is_due || SLOT(outbox, known_offsets[WRITER]) != Py_None)
        return 0;
    PyObject *loop = SLOT(outbox, known_offsets[LOOP]);
    if (loop == NULL) {
        PyErr_SetString(PyExc_AttributeError, "an outbox not yet made");
        return -1;
    }
    set_slot(outbox, known_offsets[SCHEDULED], Py_NewRef(due_alone));
    PyObject *call[3] = {loop, send_queued_here, outbox};
    PyObject *done = PyObject_VectorcallMethod(name_run_callback, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (done == NULL)
        return -1;
    Py_DECREF(done);
    return 0;
}

/* Where one message goes: the outboxes of the recipient's sessions, with the bytes each had
 * queued, and whether they take DIRECT-MESSAGE. */
typedef struct {
    PyObject *outboxes[MOST_DEVICES];
    Py_ssize_t queued[MOST_DEVICES];
    Py_ssize_t count;
    int wants_ids;
} Recipients;

/* A session the relay can deliver to, as Session.deliver would at once: its outbox added to
 * `to`. 1 yes, 0 no, -1 an error. */
static int
add_session(Recipients *to, PyObject *session)
{
    PyObject *their_rules, *outbox;
    if (!PyObject_TypeCheck(session, session_type) || to->count == MOST_DEVICES
        || (their_rules = SLOT(session, session_offsets[SESSION_RULES])) == NULL
        || Py_TYPE(their_rules) != rules_type || SLOT(their_rules, rules_offsets[RULES_HELD]) != Py_None
        || (outbox = SLOT(session, session_offsets[SESSION_OUTBOX])) == NULL || !PyObject_TypeCheck(outbox, known_type))
        return 0;
    int room = has_room(outbox, &to->queued[to->count]);
    if (room == 1)
        to->outboxes[to->count++] = outbox;
    return room;
}

/* What the directory found for a name, as recipients the relay can deliver to at once (a
 * session, or a user's devices, each of them such): 1, or 0 (the Python delivers), or -1. */
static int
find_recipients(Recipients *to, PyObject *found)
{
    to->count = 0;
    if (Py_TYPE(found) != devices_type) {
        PyObject *wants_ids = PyObject_TypeCheck(found, session_type) ? SLOT(found, session_offsets[SESSION_WANTS_IDS]) : NULL;
        if (wants_ids != Py_True && wants_ids != Py_False)
            return 0;
        to->wants_ids = wants_ids == Py_True;
        return add_session(to, found);
    }
    PyObject *devices = SLOT(found, devices_offsets[DEVICES_LIST]);
    if (devices == NULL || !PyList_Check(devices) || PyList_GET_SIZE(devices) == 0)
        return 0;
    to->wants_ids = 1;  /* (Devices.wants_ids: only clients of version 4 log in through one) */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(devices); i++) {
        PyObject *session = SLOT(PyList_GET_ITEM(devices, i), device_offsets[DEVICE_SESSION]);
        int added = session == NULL ? 0 : add_session(to, session);
        if (added != 1)
            return added;
    }
    return 1;
}

/* The frame for the recipients: DIRECT-MESSAGE with a new id, or INCOMING. */
static PyObject *
relayed_frame(Recipients *to, PyObject *sender, PyObject *raw)
{
    if (!to->wants_ids) {
        PyObject *call[2] = {sender, raw};
        return PyObject_Vectorcall(make_incoming, call, 2, NULL);
    }
    PyObject *made = PyObject_CallNoArgs(next_id);
    if (made == NULL)
        return NULL;
    if (!PyTuple_Check(made) || PyTuple_GET_SIZE(made) != 2) {
        Py_DECREF(made);
        PyErr_SetString(PyExc_TypeError, "next_id must give (id, time)");
        return NULL;
    }
    PyObject *call[4] = {sender, PyTuple_GET_ITEM(made, 0), PyTuple_GET_ITEM(made, 1), raw};
    PyObject *frame = PyObject_Vectorcall(make_direct_message, call, 4, NULL);
    Py_DECREF(made);
    return frame;
}

/* What one sender's relay works with (see sender_of). */
typedef struct {
    PyObject *name, *find, *registered_names, *contacts;
} Sender;

/* The sender behind rules, if the relay's common way is open to it (logged in, not registered
 * where there are accounts, its devices, if any, not away): 1, with references in `sender`
 * (let go by sender_done), 0 not, -1 an error. */
static int
sender_of(PyObject *rules, Sender *sender)
{
    PyObject *name = SLOT(rules, rules_offsets[RULES_NAME]), *accounts = SLOT(rules, rules_offsets[RULES_ACCOUNTS]);
    PyObject *directory = SLOT(rules, rules_offsets[RULES_DIRECTORY]), *devices = SLOT(rules, rules_offsets[RULES_DEVICES]);
    if (name == NULL || !PyUnicode_Check(name) || accounts == NULL || directory == NULL || devices == NULL
        || (accounts != Py_None && SLOT(rules, rules_offsets[RULES_REGISTERED]) != Py_False))
        return 0;
    sender->contacts = NULL;
    if (devices != Py_None) {  /* (a client of version 4: presence, unless it is away) */
        if (Py_TYPE(devices) != devices_type || SLOT(devices, devices_offsets[DEVICES_AWAY]) != Py_False
            || (sender->contacts = SLOT(devices, devices_offsets[DEVICES_CONTACTS])) == NULL
            || !PySet_Check(sender->contacts))
            return 0;
        Py_INCREF(sender->contacts);
    }
    sender->registered_names = NULL;
    sender->find = PyObject_GetAttr(directory, name_find);
    if (sender->find == NULL
        || (accounts != Py_None
            && (sender->registered_names = PyObject_GetAttr(accounts, name_registered_names)) == NULL)) {
        Py_XDECREF(sender->find);
        Py_XDECREF(sender->contacts);
        return -1;
    }
    sender->name = Py_NewRef(name);
    return 1;
}

static void
sender_done(Sender *sender)
{
    Py_DECREF(sender->name);
    Py_DECREF(sender->find);
    Py_XDECREF(sender->registered_names);
    Py_XDECREF(sender->contacts);
}

/* Relays one text the common way, as Rules._send_to and the recipient's deliver would: 1 done,
 * 0 not for this way (nothing done), -1 an error. The common way: a text of a valid length,
 * to a user logged in here (not registered, as the sender is not: nothing to record) on a
 * session, or on devices, each holding nothing back and with room in its queue. */
static int
relay_text_of(Sender *sender, PyObject *recipient, PyObject *text, PyObject *raw)
{
    if (!PyUnicode_Check(recipient) || !PyUnicode_Check(text) || !PyBytes_Check(raw) || PyBytes_GET_SIZE(raw) == 0)
        return 0;
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (length < 1 || length > most_text_chars)
        return 0;
    if (sender->registered_names != NULL) {
        int registered = PySequence_Contains(sender->registered_names, recipient);
        if (registered != 0)
            return registered < 0 ? -1 : 0;  /* (registered: recorded in the history, not here) */
    }
    PyObject *found = PyObject_Vectorcall(sender->find, &recipient, 1, NULL);
    if (found == NULL)
        return -1;
    Recipients to;
    int done = find_recipients(&to, found);
    if (done == 1) {
        PyObject *frame = relayed_frame(&to, sender->name, raw);
        if (frame == NULL || !PyBytes_Check(frame)) {
            if (frame != NULL)
                PyErr_SetString(PyExc_TypeError, "a relayed frame must be bytes");
            done = -1;
        } else if (sender->contacts != NULL && PySet_Add(sender->contacts, recipient) < 0) {
            done = -1;
        } else if (Py_TYPE(found) == devices_type
                   && PySet_Add(SLOT(found, devices_offsets[DEVICES_CONTACTS]), sender->name) < 0) {
            done = -1;
        } else {
            for (Py_ssize_t i = 0; i < to.count && done == 1; i++) {
                if (queue_for_hub(to.outboxes[i], frame, to.queued[i]) < 0)
                    done = -1;
            }
        }
        Py_XDECREF(frame);
    }
    Py_DECREF(found);
    return done;
}

/* answer_sendtos(events, start, stop, rules, outbox) -> the index of the first event left
 *
 * Answers the SENDTOs of events[start:stop] that the relay's common way can (see
 * relay_text_of), as Rules.answer and the session would: each one's frame queued for the hub
 * on its recipient's outboxes, and OK queued to flush on this client's. Stops at the first
 * event that is no SENDTO or needs more (a failure, a room, a registered user, one on another
 * node, a full queue, a sender away): the Python answers that one, as it would have. */
static PyObject *
answer_sendtos(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyList_Check(args[0]) || rules_type == NULL || known_type == NULL
        || Py_TYPE(args[3]) != rules_type || !PyObject_TypeCheck(args[4], known_type)) {
        PyErr_SetString(PyExc_TypeError, "answer_sendtos(list, start, stop, rules, outbox), the relay known");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]), stop = PyLong_AsSsize_t(args[2]);
    if ((start == -1 || stop == -1) && PyErr_Occurred())
        return NULL;
    PyObject *events = args[0], *outbox = args[4];
    Sender sender;
    int open = sender_of(args[3], &sender);
    if (open <= 0)
        return open < 0 ? NULL : PyLong_FromSsize_t(start);
    Py_ssize_t index = start < 0 ? 0 : start;
    int failed = 0;
    for (; index < stop && index < PyList_GET_SIZE(events); index++) {
        PyObject *event = PyList_GET_ITEM(events, index);
        PyObject *recipient, *text, *raw;
        if (Py_TYPE(event) != sendto_type || (recipient = SLOT(event, sendto_offsets[SENDTO_RECIPIENT])) == NULL
            || (text = SLOT(event, sendto_offsets[SENDTO_TEXT])) == NULL
            || (raw = SLOT(event, sendto_offsets[SENDTO_RAW])) == NULL)
            break;
        Py_INCREF(event);
        int done = relay_text_of(&sender, recipient, text, raw);
        Py_DECREF(event);
        if (done <= 0) {
            failed = done < 0;
            break;
        }
        Py_ssize_t queued;
        PyObject *now = SLOT(outbox, known_offsets[QUEUED]);
        if (SLOT(outbox, known_offsets[CLOSED]) != Py_False || now == NULL)
            continue;  /* (as queue_to_flush: a closed outbox takes no reply) */
        queued = PyLong_AsSsize_t(now);
        if ((queued == -1 && PyErr_Occurred()) || append_frame(outbox, ok_reply, queued) < 0) {
            failed = 1;
            break;
        }
    }
    sender_done(&sender);
    return failed ? NULL : PyLong_FromSsize_t(index);
}

/* relay_text(rules, recipient, text, raw) -> whether it was relayed
 *
 * Rules.send_text's common way (see relay_text_of), for a port that reads requests of its own
 * (IRC's PRIVMSG): True, delivered (its answer is OK); False, nothing was done (also before
 * known_relay, or for rules of another type). */
static PyObject *
relay_text(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "relay_text(rules, recipient, text, raw)");
        return NULL;
    }
    if (rules_type == NULL || known_type == NULL || Py_TYPE(args[0]) != rules_type)
        Py_RETURN_FALSE;  /* (not known, or not the rules it knows: for the Python) */
    Sender sender;
    int done = sender_of(args[0], &sender);
    if (done == 1) {
        done = relay_text_of(&sender, args[1], args[2], args[3]);
        sender_done(&sender);
    }
    if (done < 0)
        return NULL;
    return Py_NewRef(done ? Py_True : Py_False);
}

/* --- The IRC port's PRIVMSG --------------------------------------------------------------- */

static PyTypeObject *privmsg_type;
static PyObject *to_name, *name_registered, *name_quitting, *name_caps, *name_label, *name_away_of, *echo_message;

/* known_privmsg(privmsg_type, to_name): what answer_privmsgs reads: the IRC port's PRIVMSG
 * (a tuple: tags, target, text, raw) and the function from a nick to a user's name. */
static PyObject *
known_privmsg(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyType_Check(args[0]) || !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type)
        || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "known_privmsg(a tuple's type, to_name)");
        return NULL;
    }
    if (name_registered == NULL) {
        name_registered = PyUnicode_InternFromString("registered");
        name_quitting = PyUnicode_InternFromString("quitting");
        name_caps = PyUnicode_InternFromString("caps");
        name_label = PyUnicode_InternFromString("_label");
        name_away_of = PyUnicode_InternFromString("away_of");
        echo_message = PyUnicode_InternFromString("echo-message");
        if (name_registered == NULL || name_quitting == NULL || name_caps == NULL || name_label == NULL
            || name_away_of == NULL || echo_message == NULL)
            return NULL;
    }
    Py_XSETREF(privmsg_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(to_name, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

/* Whether the IRC client's state lets its PRIVMSGs take the common way: registered, not
 * quitting, no echo asked for (its echo is the Python's). 1, 0, or -1. */
static int
client_is_plain(PyObject *client)
{
    int is_plain = 0;
    PyObject *registered = PyObject_GetAttr(client, name_registered);
    PyObject *quitting = registered == NULL ? NULL : PyObject_GetAttr(client, name_quitting);
    PyObject *caps = quitting == NULL ? NULL : PyObject_GetAttr(client, name_caps);
    if (caps == NULL)
        is_plain = -1;
    else if (registered == Py_True && quitting == Py_False)
        is_plain = PySequence_Contains(caps, echo_message) == 0;
    Py_XDECREF(registered);
    Py_XDECREF(quitting);
    Py_XDECREF(caps);
    return is_plain;
}

/* One PRIVMSG the common way, as IrcClient.answer and _send would (to one nick, no tags, a
 * text; the user not away, as the answer would then say): 1 done, 0 left to the Python
 * (nothing done), -1 an error. */
static int
relay_privmsg(Sender *sender, PyObject *away_of, PyObject *message)
{
    PyObject *tags = PyTuple_GET_ITEM(message, 0), *target = PyTuple_GET_ITEM(message, 1);
    PyObject *text = PyTuple_GET_ITEM(message, 2), *raw = PyTuple_GET_ITEM(message, 3);
    if (tags != Py_None || !PyUnicode_Check(target) || !PyUnicode_Check(text) || PyUnicode_GET_LENGTH(text) == 0
        || PyUnicode_GET_LENGTH(target) == 0 || PyUnicode_READ_CHAR(target, 0) == '#'
        || PyUnicode_FindChar(target, ',', 0, PyUnicode_GET_LENGTH(target), 1) != -1)
        return 0;
    PyObject *name = PyObject_Vectorcall(to_name, &target, 1, NULL);
    if (name == NULL)
        return -1;
    int done = 0;
    if (name != Py_None) {
        PyObject *away = PyObject_Vectorcall(away_of, &name, 1, NULL);
        if (away == NULL)
            done = -1;
        else if (away == Py_None)
            done = relay_text_of(sender, name, text, raw);
        Py_XDECREF(away);
    }
    Py_DECREF(name);
    return done;
}

/* answer_privmsgs(events, start, stop, client, rules) -> the index of the first event left
 *
 * The IRC port's answer_sendtos: the PRIVMSGs of events[start:stop] that take the common way
 * (see relay_privmsg and relay_text_of) relayed, as IrcClient.answer would (whose answer to
 * each is nothing); stops at the first that does not, which the Python answers. */
static PyObject *
answer_privmsgs(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyList_Check(args[0]) || rules_type == NULL || known_type == NULL || privmsg_type == NULL
        || Py_TYPE(args[4]) != rules_type) {
        PyErr_SetString(PyExc_TypeError, "answer_privmsgs(list, start, stop, client, rules), the relay known");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]), stop = PyLong_AsSsize_t(args[2]);
    if ((start == -1 || stop == -1) && PyErr_Occurred())
        return NULL;
    PyObject *events = args[0], *client = args[3];
    Py_ssize_t index = start < 0 ? 0 : start;
    if (index >= stop || index >= PyList_GET_SIZE(events) || Py_TYPE(PyList_GET_ITEM(events, index)) != privmsg_type)
        return PyLong_FromSsize_t(start);  /* (no PRIVMSG first: nothing to look up) */
    int open = client_is_plain(client);
    Sender sender;
    if (open == 1)
        open = sender_of(args[4], &sender);
    if (open <= 0)
        return open < 0 ? NULL : PyLong_FromSsize_t(start);
    PyObject *directory = SLOT(args[4], rules_offsets[RULES_DIRECTORY]);
    PyObject *away_of = PyObject_GetAttr(directory, name_away_of);
    int failed = away_of == NULL;
    for (; !failed && index < stop && index < PyList_GET_SIZE(events); index++) {
        PyObject *event = PyList_GET_ITEM(events, index);
        if (Py_TYPE(event) != privmsg_type || PyTuple_GET_SIZE(event) != 4)
            break;
        Py_INCREF(event);
        int done = relay_privmsg(&sender, away_of, event);
        Py_DECREF(event);
        if (done <= 0) {
            failed = done < 0;
            break;
        }
    }
    /* (As IrcClient.answer does for each of them: no label is being answered.) */
    if (!failed && index > start && PyObject_SetAttr(client, name_label, Py_None) < 0)
        failed = 1;
    Py_XDECREF(away_of);
    sender_done(&sender);
    return failed ? NULL : PyLong_FromSsize_t(index);
}

static PyMethodDef methods[] = {
    {"known_outboxes", (PyCFunction)(void (*)(void))known_outboxes, METH_FASTCALL, "The outboxes send_queued sends for."},
    {"send_queued", (PyCFunction)send_queued, METH_O, "The hub's send of what an outbox has queued."},
    {"known_socket_stream", (PyCFunction)(void (*)(void))known_socket_stream, METH_FASTCALL,
     "The stream tried by its socket's own send."},
    {"known_translation", (PyCFunction)(void (*)(void))known_translation, METH_FASTCALL,
     "An outbox type whose frames are sent as lines made of them."},
    {"offer_each", (PyCFunction)(void (*)(void))offer_each, METH_FASTCALL, "A room's frame, to its members' sinks."},
    {"known_relay", (PyCFunction)(void (*)(void))known_relay, METH_FASTCALL, "What answer_sendtos reads."},
    {"answer_sendtos", (PyCFunction)(void (*)(void))answer_sendtos, METH_FASTCALL,
     "A run of SENDTOs answered the relay's common way."},
    {"relay_text", (PyCFunction)(void (*)(void))relay_text, METH_FASTCALL, "One text relayed the common way."},
    {"known_privmsg", (PyCFunction)(void (*)(void))known_privmsg, METH_FASTCALL, "What answer_privmsgs reads."},
    {"answer_privmsgs", (PyCFunction)(void (*)(void))answer_privmsgs, METH_FASTCALL,
     "A run of the IRC port's PRIVMSGs answered the relay's common way."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fanout", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    return PyModule_Create(&module);
}
