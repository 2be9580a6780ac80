/* The relay's common case in C (see relay.py): answer_sendtos, a run of SENDTOs answered at
 * once; relay_text, one text (the IRC port's PRIVMSG to a nick); answer_privmsgs, a run of the
 * IRC port's PRIVMSGs. Each does what Rules._send_to, the recipient's deliver and
 * Outbox.queue_for_hub do, for a message to a user logged in here on plain sessions (nothing
 * held back, room in every queue; handed to the history through the accounts' record where
 * the Python would), or what Rooms.post does for a member's message to a room of this server,
 * and leaves any other to the Python, with nothing done.
 * The objects are read and written through their slots, as the Python does: the outboxes' as
 * _outbox.h says, the others' as known_relay is told.
 */
#include "_outbox.h"

static PyObject *due_alone, *send_queued, *name_run_callback;

/* The slots the relay reads, of the rules, of a SENDTO, of a session, of a user's devices and
 * of one device, in the order known_relay is given them. */
enum {
    RULES_NAME, RULES_HELD, RULES_REGISTERED, RULES_DEVICES, RULES_DIRECTORY, RULES_ACCOUNTS, RULES_VERSION, RULES_ROOMS,
    RULES_HISTORY_KEY, RULES_SLOTS
};
enum { SENDTO_RECIPIENT, SENDTO_TEXT, SENDTO_RAW, SENDTO_SLOTS };
enum { SESSION_RULES, SESSION_OUTBOX, SESSION_WANTS_IDS, SESSION_SLOTS };
enum { DEVICES_LIST, DEVICES_CONTACTS, DEVICES_AWAY, DEVICES_ELSEWHERE, DEVICES_SLOTS };
enum { DEVICE_SESSION, DEVICE_SLOTS };

/* The most devices of one user the relay delivers to itself (the Python delivers to more). */
#define MOST_DEVICES 8

static PyTypeObject *rules_type, *sendto_type, *session_type, *devices_type;
static Py_ssize_t rules_offsets[RULES_SLOTS], sendto_offsets[SENDTO_SLOTS], session_offsets[SESSION_SLOTS];
static Py_ssize_t devices_offsets[DEVICES_SLOTS], device_offsets[DEVICE_SLOTS];
static PyObject *make_incoming, *ok_reply, *name_find, *name_registered_names, *name_record, *name_history_key;
/* A message's id, and its DIRECT-MESSAGE frame: _message_ids.c's and _frames.c's C (capsules). */
static void (*take_id_at)(long long, long long *, long long *);
static PyObject *(*direct_message)(PyObject *, unsigned long long, unsigned long long, PyObject *);
static Py_ssize_t most_text_chars;

/* known_relay(rules_type, rules_slots, sendto_type, sendto_slots, session_type, session_slots,
 *             devices_type, devices_slots, device_slots, incoming_frame, direct_message,
 *             take_id_at, ok, max_text_chars, outbox_type, outbox_slots, send_queued)
 *
 * What the relay reads, given once: the slots name, held, _registered, _devices, _directory
 * and _accounts of the rules; recipient, text and raw of a SENDTO; rules, _outbox and
 * wants_ids of a session (of this type or one made from it, whose deliver is its own);
 * _devices, contacts, away and elsewhere of a user's devices, and session of one device; the
 * relayed frames' makers (direct_message: _frames.c's capsule), the taker of a message's id
 * (take_id_at: _message_ids.c's capsule), the OK reply and a text's limit; the outboxes' type and
 * slots (see _outbox.h), and the hub's send of one, which queue_for_hub makes due. */
static PyObject *
known_relay(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 17 || !PyType_Check(args[0]) || !PyType_Check(args[2]) || !PyType_Check(args[4])
        || !PyType_Check(args[6]) || !PyCallable_Check(args[9]) || !PyBytes_Check(args[12])
        || !PyLong_Check(args[13]) || !PyCallable_Check(args[16])) {
        PyErr_SetString(PyExc_TypeError, "known_relay(type, slots, type, slots, type, slots, type, slots, slots, "
                                         "incoming_frame, direct_message, take_id_at, ok: bytes, max_text_chars: int, "
                                         "outbox_type, outbox_slots, send_queued)");
        return NULL;
    }
    void *making = PyCapsule_GetPointer(args[10], "chatroom.direct_message");
    void *taking = making == NULL ? NULL : PyCapsule_GetPointer(args[11], "chatroom.take_id_at");
    if (taking == NULL)
        return NULL;
    if (outbox_slots(args[14], args[15]) < 0)
        return NULL;
    Py_ssize_t most = PyLong_AsSsize_t(args[13]);
    if (most == -1 && PyErr_Occurred())
        return NULL;
    if (slot_offsets(args[1], rules_offsets, RULES_SLOTS) < 0 || slot_offsets(args[3], sendto_offsets, SENDTO_SLOTS) < 0
        || slot_offsets(args[5], session_offsets, SESSION_SLOTS) < 0
        || slot_offsets(args[7], devices_offsets, DEVICES_SLOTS) < 0
        || slot_offsets(args[8], device_offsets, DEVICE_SLOTS) < 0)
        return NULL;
    static const Name names[] = {
        {&name_find, "find"},
        {&name_registered_names, "registered_names"},
        {&name_record, "record"},
        {&name_history_key, "history_key"},
        {&name_run_callback, "run_callback"},
    };
    if (intern_names(names, COUNT_OF(names)) < 0
        || (due_alone == NULL && (due_alone = PyLong_FromLong(DUE_ALONE)) == NULL))
        return NULL;
    Py_XSETREF(send_queued, Py_NewRef(args[16]));
    most_text_chars = most;
    Py_XSETREF(rules_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(sendto_type, (PyTypeObject *)Py_NewRef(args[2]));
    Py_XSETREF(session_type, (PyTypeObject *)Py_NewRef(args[4]));
    Py_XSETREF(devices_type, (PyTypeObject *)Py_NewRef(args[6]));
    Py_XSETREF(make_incoming, Py_NewRef(args[9]));
    direct_message = *(PyObject * (*const *)(PyObject *, unsigned long long, unsigned long long, PyObject *)) making;
    take_id_at = *(void (*const *)(long long, long long *, long long *))taking;
    Py_XSETREF(ok_reply, Py_NewRef(args[12]));
    Py_RETURN_NONE;
}

/* Whether an outbox is open and under its limit: 1 with room, 0 without (or closed), -1 an
 * error. */
static int
has_room(PyObject *outbox)
{
    PyObject *now = SLOT(outbox, known_offsets[QUEUED]), *limit = SLOT(outbox, known_offsets[LIMIT]);
    if (now == NULL || limit == NULL || SLOT(outbox, known_offsets[CLOSED]) != Py_False)
        return 0;
    Py_ssize_t most = PyLong_AsSsize_t(limit), queued = PyLong_AsSsize_t(now);
    if ((most == -1 || queued == -1) && PyErr_Occurred())
        return -1;
    return queued < most;
}

/* Appends data to an open outbox's queue, its size read now (not when its room was checked:
 * making a frame may run Python): 0, or -1. */
static int
append_now(PyObject *outbox, PyObject *data)
{
    PyObject *now = SLOT(outbox, known_offsets[QUEUED]);
    Py_ssize_t queued = now == NULL ? -1 : PyLong_AsSsize_t(now);
    if (queued == -1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "an outbox not yet made");
        return -1;
    }
    return append_frame(outbox, data, queued);
}

/* Outbox.queue_for_hub on an outbox found with room: queued, and its send made due by a
 * callback of its own unless one is due or a writer is at it. 0, or -1. */
static int
queue_for_hub(PyObject *outbox, PyObject *frame)
{
    if (append_now(outbox, frame) < 0)
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
    PyObject *call[3] = {loop, send_queued, outbox};
    PyObject *done = PyObject_VectorcallMethod(name_run_callback, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (done == NULL)
        return -1;
    Py_DECREF(done);
    return 0;
}

/* Where one message goes: the outboxes of the recipient's sessions (held: the frame's making
 * runs Python), and whether they take DIRECT-MESSAGE. Let go by recipients_done. */
typedef struct {
    PyObject *outboxes[MOST_DEVICES];
    Py_ssize_t count;
    int wants_ids;
} Recipients;

static void
recipients_done(Recipients *to)
{
    for (Py_ssize_t i = 0; i < to->count; i++)
        Py_DECREF(to->outboxes[i]);
    to->count = 0;
}

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
    int room = has_room(outbox);
    if (room == 1)
        to->outboxes[to->count++] = Py_NewRef(outbox);
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
    PyObject *devices = SLOT(found, devices_offsets[DEVICES_LIST]), *contacts = SLOT(found, devices_offsets[DEVICES_CONTACTS]);
    if (devices == NULL || !PyList_Check(devices) || PyList_GET_SIZE(devices) == 0 || contacts == NULL
        || !PySet_Check(contacts))
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

/* What one sender's relay works with (see sender_of): its accounts and devices, NULL where
 * there are none; registered, whether the history keeps everything it sends; what its daily
 * history quota is counted under (Rules.history_key, where there are accounts); the accounts'
 * store and daily history quota, once a room's message has been recorded (NULL before). */
typedef struct {
    PyObject *name, *directory, *find, *registered_names, *contacts, *accounts, *devices, *history_key, *store, *quota;
    int registered;
    long long received_ms; /* see received_ms: -1 until read */
} Sender;

/* The sender behind rules, if the relay's common way is open to it (logged in, its devices,
 * if any, not away): 1, with references in `sender` (let go by sender_done), 0 not, -1 an
 * error. */
static int
sender_of(PyObject *rules, Sender *sender)
{
    PyObject *name = SLOT(rules, rules_offsets[RULES_NAME]), *accounts = SLOT(rules, rules_offsets[RULES_ACCOUNTS]);
    PyObject *directory = SLOT(rules, rules_offsets[RULES_DIRECTORY]), *devices = SLOT(rules, rules_offsets[RULES_DEVICES]);
    PyObject *registered = SLOT(rules, rules_offsets[RULES_REGISTERED]);
    if (name == NULL || !PyUnicode_Check(name) || accounts == NULL || directory == NULL || devices == NULL
        || (registered != Py_True && registered != Py_False))
        return 0;
    PyObject *contacts = NULL;
    if (devices != Py_None) {  /* (a client of version 4: presence, unless it is away) */
        if (Py_TYPE(devices) != devices_type || SLOT(devices, devices_offsets[DEVICES_AWAY]) != Py_False
            || (contacts = SLOT(devices, devices_offsets[DEVICES_CONTACTS])) == NULL || !PySet_Check(contacts))
            return 0;
    }
    PyObject *find = PyObject_GetAttr(directory, name_find);
    PyObject *registered_names = NULL, *history_key = NULL;
    if (accounts != Py_None) {  /* (the key an unregistered sender's quota is counted under: asked once a login) */
        history_key = registered == Py_True ? name : SLOT(rules, rules_offsets[RULES_HISTORY_KEY]);
        history_key = history_key == NULL || history_key == Py_None ? PyObject_CallMethodNoArgs(rules, name_history_key)
                                                                    : Py_NewRef(history_key);
    }
    if (find == NULL || (accounts != Py_None && history_key == NULL)
        || (accounts != Py_None && (registered_names = PyObject_GetAttr(accounts, name_registered_names)) == NULL)) {
        Py_XDECREF(find);
        Py_XDECREF(history_key);
        return -1;
    }
    sender->name = Py_NewRef(name);
    sender->directory = Py_NewRef(directory);
    sender->find = find;
    sender->registered_names = registered_names;
    sender->accounts = accounts == Py_None ? NULL : Py_NewRef(accounts);
    sender->registered = sender->accounts != NULL && registered == Py_True;
    sender->devices = devices == Py_None ? NULL : Py_NewRef(devices);
    sender->contacts = Py_XNewRef(contacts);
    sender->history_key = history_key;
    sender->store = NULL;
    sender->quota = NULL;
    sender->received_ms = -1;
    return 1;
}

static void
sender_done(Sender *sender)
{
    Py_DECREF(sender->name);
    Py_DECREF(sender->directory);
    Py_DECREF(sender->find);
    Py_XDECREF(sender->registered_names);
    Py_XDECREF(sender->contacts);
    Py_XDECREF(sender->accounts);
    Py_XDECREF(sender->devices);
    Py_XDECREF(sender->history_key);
    Py_XDECREF(sender->store);
    Py_XDECREF(sender->quota);
}

/* The sender again, after Python that may have let other greenlets run (a store's write that
 * waited for the disk): its state read afresh, as the Python reads it for every message. 1,
 * 0 (the common way is closed to it now: nothing held), or -1. Mostly nothing has changed,
 * which its slots show without making anything anew. */
static int
sender_again(PyObject *rules, Sender *sender)
{
    PyObject *devices = SLOT(rules, rules_offsets[RULES_DEVICES]), *accounts = SLOT(rules, rules_offsets[RULES_ACCOUNTS]);
    PyObject *registered = SLOT(rules, rules_offsets[RULES_REGISTERED]);
    if (SLOT(rules, rules_offsets[RULES_NAME]) == sender->name
        && SLOT(rules, rules_offsets[RULES_DIRECTORY]) == sender->directory
        && accounts == (sender->accounts != NULL ? sender->accounts : Py_None)
        && (sender->accounts == NULL || registered == (sender->registered ? Py_True : Py_False))
        && devices == (sender->devices != NULL ? sender->devices : Py_None)
        && (devices == Py_None
            || (SLOT(devices, devices_offsets[DEVICES_AWAY]) == Py_False
                && SLOT(devices, devices_offsets[DEVICES_CONTACTS]) == sender->contacts)))
        return 1;
    sender_done(sender);
    return sender_of(rules, sender);
}

/* A message's id and time, as take_id_at gives them. */
typedef struct {
    long long message_id, time_ms;
} MessageId;

/* When the sender's messages of this run were received: the clock, read once a run (per
 * message, the clock was a fortieth of the IRC port's relay). 0, or -1 with OSError set. */
static int
received_ms(Sender *sender, long long *ms)
{
    if (sender->received_ms < 0) {
        struct timespec now;
        if (clock_gettime(CLOCK_REALTIME, &now) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        sender->received_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    }
    *ms = sender->received_ms;
    return 0;
}

/* The frame for the recipients: DIRECT-MESSAGE with a new id, or INCOMING; a message the
 * history keeps (recorded) takes an id either way, in `id`. */
static PyObject *
relayed_frame(Recipients *to, Sender *sender, PyObject *raw, int recorded, MessageId *id)
{
    if (to->wants_ids || recorded) {
        long long now_ms;
        if (received_ms(sender, &now_ms) < 0)
            return NULL;
        take_id_at(now_ms, &id->message_id, &id->time_ms);
    }
    if (!to->wants_ids) {
        PyObject *call[2] = {sender->name, raw};
        return PyObject_Vectorcall(make_incoming, call, 2, NULL);
    }
    return direct_message(sender->name, (unsigned long long)id->message_id, (unsigned long long)id->time_ms, raw);
}

/* Whether a text may take the common way: of a valid length, with its UTF-8 at hand (raw). */
static int
text_fits(PyObject *text, PyObject *raw)
{
    if (!PyUnicode_Check(text) || !PyBytes_Check(raw) || PyBytes_GET_SIZE(raw) == 0)
        return 0;
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    return length >= 1 && length <= most_text_chars;
}

/* Whether the Python must show what the sender sends on its other sessions (a message the
 * history keeps, from a user on several devices, as Devices.several says): 1 (or where that
 * is not plain here: devices on other nodes of a cluster, which the Python looks at), or 0. */
static int
shown_on_other_devices(Sender *sender)
{
    if (sender->devices == NULL)
        return 0;
    PyObject *list = SLOT(sender->devices, devices_offsets[DEVICES_LIST]);
    if (list == NULL || !PyList_Check(list) || SLOT(sender->devices, devices_offsets[DEVICES_ELSEWHERE]) != Py_None)
        return 1;
    return PyList_GET_SIZE(list) > 1;
}

/* As Rules._send_to hands a delivered message to the history: the accounts' record (which may
 * wait for the disk, while other greenlets run). 2 (done, the sender to be read again), or -1. */
static int
record_direct(Sender *sender, PyObject *recipient, PyObject *text, MessageId *id)
{
    PyObject *message_id = PyLong_FromLongLong(id->message_id);
    PyObject *time_ms = message_id == NULL ? NULL : PyLong_FromLongLong(id->time_ms);
    PyObject *done = NULL;
    if (time_ms != NULL) {
        PyObject *call[7] = {sender->accounts, sender->name, recipient, text, message_id, time_ms, sender->history_key};
        done = PyObject_VectorcallMethod(name_record, call, 7 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    Py_XDECREF(message_id);
    Py_XDECREF(time_ms);
    if (done == NULL)
        return -1;
    Py_DECREF(done);
    return 2;
}

/* Relays one text the common way, as Rules._send_to and the recipient's deliver would: 1 done,
 * 2 done with Python run that may have let other greenlets run (the history's record: the
 * sender is to be read again before its next message), 0 not for this way (nothing done), -1
 * an error. The common way: a text of a valid length, to a user logged in here on a session,
 * or on devices, each holding nothing back and with room in its queue; kept in the history
 * where the sender or the recipient is registered, unless the sender is on several devices
 * (what it sent is shown on the others: the Python's). */
static int
relay_text_of(Sender *sender, PyObject *recipient, PyObject *text, PyObject *raw)
{
    if (!PyUnicode_Check(recipient) || !text_fits(text, raw))
        return 0;
    int recorded = sender->registered;
    if (!recorded && sender->registered_names != NULL
        && (recorded = PySequence_Contains(sender->registered_names, recipient)) < 0)
        return -1;
    if (recorded && shown_on_other_devices(sender))
        return 0;
    PyObject *found = PyObject_Vectorcall(sender->find, &recipient, 1, NULL);
    if (found == NULL)
        return -1;
    Recipients to;
    MessageId id;
    int done = find_recipients(&to, found);
    if (done == 1) {
        PyObject *frame = relayed_frame(&to, sender, raw, recorded, &id);
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
                if (queue_for_hub(to.outboxes[i], frame) < 0)
                    done = -1;
            }
        }
        Py_XDECREF(frame);
    }
    recipients_done(&to);
    Py_DECREF(found);
    if (done == 1 && recorded)
        done = record_direct(sender, recipient, text, &id);
    return done;
}

/* --- A room's message --------------------------------------------------------------------- */

/* The slots of the accounts' daily history quota (quotas.DailyBytes) the relay reads. */
enum { QUOTA_LIMIT, QUOTA_DAY, QUOTA_BYTES, QUOTA_SLOTS };

static PyTypeObject *rooms_type, *local_directory_type, *quota_type;
static Py_ssize_t quota_offsets[QUOTA_SLOTS];
static PyObject *make_room_message, *offer_each, *counts, *store_unavailable;
static long rooms_version;
static PyObject *name_rooms, *name_members, *name_sinks, *name_last_id, *name_changes, *name_room_messages,
    *name_room_deliveries, *name_store, *name_record_room, *name_name_attr, *name_history_bytes, *one;

/* known_rooms(rooms_type, directory_type, room_message_frame, offer_each, counts,
 *             store_unavailable, rooms_version, quota_type, quota_slots): what post_to_room
 * reads and calls: the rooms of one server (Rooms: its _rooms, each Room's members, last_id
 * and sinks), the directory whose _changes the sinks are found at, the frame's maker, the
 * fan-out, the metrics' counts, the store's failure, the version from which a client has
 * rooms, and the accounts' daily history quota (its _limit, _day and _bytes). */
static PyObject *
known_rooms(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 9 || !PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyCallable_Check(args[2])
        || !PyCallable_Check(args[3]) || !PyType_Check(args[5]) || !PyLong_Check(args[6]) || !PyType_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError,
                        "known_rooms(rooms_type, directory_type, room_message_frame, offer_each, counts, "
                        "store_unavailable, rooms_version, quota_type, quota_slots)");
        return NULL;
    }
    if (slot_offsets(args[8], quota_offsets, QUOTA_SLOTS) < 0)
        return NULL;
    static const Name names[] = {
        {&name_rooms, "_rooms"},
        {&name_members, "members"},
        {&name_sinks, "sinks"},
        {&name_last_id, "last_id"},
        {&name_changes, "_changes"},
        {&name_room_messages, "room_messages"},
        {&name_room_deliveries, "room_deliveries"},
        {&name_store, "store"},
        {&name_record_room, "record_room"},
        {&name_name_attr, "name"},
        {&name_history_bytes, "_history_bytes"},
    };
    if (intern_names(names, COUNT_OF(names)) < 0 || (one == NULL && (one = PyLong_FromLong(1)) == NULL))
        return NULL;
    rooms_version = PyLong_AsLong(args[6]);
    if (rooms_version == -1 && PyErr_Occurred())
        return NULL;
    Py_XSETREF(rooms_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(local_directory_type, (PyTypeObject *)Py_NewRef(args[1]));
    Py_XSETREF(make_room_message, Py_NewRef(args[2]));
    Py_XSETREF(offer_each, Py_NewRef(args[3]));
    Py_XSETREF(counts, Py_NewRef(args[4]));
    Py_XSETREF(store_unavailable, Py_NewRef(args[5]));
    Py_XSETREF(quota_type, (PyTypeObject *)Py_NewRef(args[7]));
    Py_RETURN_NONE;
}

/* counts.<name> += amount: 0, or -1. */
static int
count(PyObject *name, PyObject *amount)
{
    PyObject *after = add_to(counts, name, amount);
    Py_XDECREF(after);
    return after == NULL ? -1 : 0;
}

/* The room's members' sinks as Rooms.tell keeps them, if still good (found at the directory's
 * changes now): a new reference to the list; NULL without an error where the Python must find
 * them again, or with one. */
static PyObject *
sinks_of(PyObject *room, PyObject *directory)
{
    PyObject *sinks = PyObject_GetAttr(room, name_sinks), *list = NULL;
    PyObject *changes = sinks == NULL ? NULL : PyObject_GetAttr(directory, name_changes);
    if (changes != NULL && PyTuple_Check(sinks) && PyTuple_GET_SIZE(sinks) == 2
        && PyList_Check(PyTuple_GET_ITEM(sinks, 1))) {
        int same = PyObject_RichCompareBool(PyTuple_GET_ITEM(sinks, 0), changes, Py_EQ);
        if (same == 1)
            list = Py_NewRef(PyTuple_GET_ITEM(sinks, 1));
    }
    Py_XDECREF(changes);
    Py_XDECREF(sinks);
    return list;
}

/* As DailyBytes.add counts a text against its sender's history quota for today (the day of
 * time_ms, under the sender's history_key), where the accounts' quota is one of today and the
 * text is within it: 1 counted, 0 left to the Python (a new day, or past the quota:
 * Accounts.record_room says so), -1. */
static int
count_in_quota(Sender *sender, PyObject *text, long long time_ms)
{
    if (sender->quota == NULL && (sender->quota = PyObject_GetAttr(sender->accounts, name_history_bytes)) == NULL)
        return -1;
    PyObject *quota = sender->quota;
    int counted = 0;
    PyObject *limit = NULL, *day = NULL, *bytes = NULL;
    if (Py_TYPE(quota) == quota_type && PyUnicode_Check(text)) {
        limit = SLOT(quota, quota_offsets[QUOTA_LIMIT]);
        day = SLOT(quota, quota_offsets[QUOTA_DAY]);
        bytes = SLOT(quota, quota_offsets[QUOTA_BYTES]);
    }
    if (limit != NULL && day != NULL && bytes != NULL && PyLong_Check(limit) && PyLong_Check(day)
        && PyDict_Check(bytes)) {
        long long most = PyLong_AsLongLong(limit), today = PyLong_AsLongLong(day);
        PyObject *before = PyErr_Occurred() ? NULL : PyDict_GetItemWithError(bytes, sender->history_key);
        long long used = before == NULL ? 0 : PyLong_AsLongLong(before);
        long long total = used + PyUnicode_GET_LENGTH(text);
        if (PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_OverflowError))
                PyErr_Clear(); /* (a limit past 64 bits, say: the Python's to count) */
            else
                counted = -1;
        } else if (today == time_ms / 86400000 && total <= most) {
            PyObject *value = PyLong_FromLongLong(total);
            counted = value == NULL || PyDict_SetItem(bytes, sender->history_key, value) < 0 ? -1 : 1;
            Py_XDECREF(value);
        }
    }
    return counted;
}

/* As RoomRules._room_message records a room's message: where there are accounts, through
 * their record_room (within the sender's daily quota; it may wait for the disk), or, once
 * counted here, the store's; a StoreUnavailable is let go (relayed, not kept: the store's log
 * has said so). 1 (no store), 2 (recorded or let go: the sender is to be read again, as for
 * relay_text_of), or -1. (when: time_ms's value.) */
static int
record_in_store(Sender *sender, PyObject *room, PyObject *message_id, PyObject *text, PyObject *time_ms,
                long long when)
{
    if (sender->accounts == NULL)
        return 1;
    int counted = count_in_quota(sender, text, when);
    if (counted < 0)
        return -1;
    if (counted && sender->store == NULL && (sender->store = PyObject_GetAttr(sender->accounts, name_store)) == NULL)
        return -1;
    PyObject *call[7] = {counted ? sender->store : sender->accounts, room, message_id, sender->name, text, time_ms,
                         sender->history_key};
    size_t arguments = counted ? 6 : 7; /* (the store's record_room takes no key) */
    PyObject *done = PyObject_VectorcallMethod(name_record_room, call, arguments | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (done == NULL) {
        if (!PyErr_ExceptionMatches(store_unavailable))
            return -1;
        PyErr_Clear();
        return 2;
    }
    Py_DECREF(done);
    return 2;
}

/* A SENDTO to a room the common way, as Rules._send_to, RoomRules._room_message and
 * Rooms.post do: a text of a valid length, from a member of a room of this server (Rooms)
 * whose members' sinks are found already: posted with the room's next id, counted, and
 * recorded where there is a store. 1 done, 2 done and recorded (see record_in_store), 0 left
 * to the Python (nothing done), -1 an error. */
static int
post_to_room(Sender *sender, PyObject *rules, PyObject *name, PyObject *text, PyObject *raw)
{
    if (rooms_type == NULL || !text_fits(text, raw))
        return 0;
    PyObject *version = SLOT(rules, rules_offsets[RULES_VERSION]), *rooms = SLOT(rules, rules_offsets[RULES_ROOMS]);
    PyObject *directory = SLOT(rules, rules_offsets[RULES_DIRECTORY]);
    if (version == NULL || !PyLong_Check(version) || rooms == NULL || Py_TYPE(rooms) != rooms_type
        || directory == NULL || Py_TYPE(directory) != local_directory_type)
        return 0;
    long client_version = PyLong_AsLong(version);
    if (client_version == -1 && PyErr_Occurred())
        return -1;
    if (client_version < rooms_version)
        return 0;
    PyObject *all = PyObject_GetAttr(rooms, name_rooms);
    if (all == NULL)
        return -1;
    PyObject *room = PyDict_Check(all) ? PyDict_GetItemWithError(all, name) : NULL;
    Py_XINCREF(room);
    Py_DECREF(all);
    if (room == NULL)
        return PyErr_Occurred() ? -1 : 0;
    int done = 0;
    PyObject *members = PyObject_GetAttr(room, name_members), *next = NULL, *frame = NULL;
    PyObject *delivered = NULL, *sinks = NULL;
    int member = members == NULL ? -1 : PyDict_Check(members) ? PyDict_Contains(members, sender->name) : 0;
    if (member == 1 && (sinks = sinks_of(room, directory)) == NULL && PyErr_Occurred())
        member = -1;
    if (member == 1 && sinks != NULL) {
        long long when;
        if ((next = add_to(room, name_last_id, one)) == NULL || received_ms(sender, &when) < 0) {
            done = -1;
        } else if (sender->contacts != NULL && PySet_Add(sender->contacts, name) < 0) {
            done = -1;
        } else {
            PyObject *time_ms = PyLong_FromLongLong(when);
            PyObject *room_name = PyObject_GetAttr(room, name_name_attr);
            if (time_ms != NULL && room_name != NULL) {
                PyObject *call[5] = {room_name, sender->name, next, time_ms, raw};
                frame = PyObject_Vectorcall(make_room_message, call, 5, NULL);
            }
            PyObject *fan[2] = {sinks, frame};
            delivered = frame == NULL ? NULL : PyObject_Vectorcall(offer_each, fan, 2, NULL);
            done = delivered == NULL || count(name_room_messages, one) < 0 || count(name_room_deliveries, delivered) < 0
                       ? -1
                       : record_in_store(sender, name, next, text, time_ms, when);
            Py_XDECREF(time_ms);
            Py_XDECREF(room_name);
        }
    }
    if (member < 0)
        done = -1;
    Py_XDECREF(sinks);
    Py_XDECREF(delivered);
    Py_XDECREF(frame);
    Py_XDECREF(next);
    Py_XDECREF(members);
    Py_DECREF(room);
    return done;
}

/* A run's arguments (events, start, stop, session): the list, the bounds (start at least 0,
 * stop at most the list's size when read) and the session's rules: 0, or -1 with the error set. */
typedef struct {
    PyObject *events, *session, *rules;
    Py_ssize_t start, stop;
} Run;

static int
run_of(Run *run, PyObject *const *args, Py_ssize_t nargs, const char *usage)
{
    if (nargs != 4 || !PyList_Check(args[0]) || rules_type == NULL || !PyObject_TypeCheck(args[3], session_type)
        || (run->rules = SLOT(args[3], session_offsets[SESSION_RULES])) == NULL
        || Py_TYPE(run->rules) != rules_type) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    run->start = PyLong_AsSsize_t(args[1]);
    run->stop = PyLong_AsSsize_t(args[2]);
    if ((run->start == -1 || run->stop == -1) && PyErr_Occurred())
        return -1;
    run->start = run->start < 0 ? 0 : run->start;
    run->events = args[0];
    run->session = args[3];
    return 0;
}

/* answer_sendtos(events, start, stop, session) -> the index of the first event left
 *
 * Answers the SENDTOs of events[start:stop] that the relay's common way can (see
 * relay_text_of and post_to_room), as the session's Rules.answer and the session would: each
 * one's frame queued for the hub on its recipient's outboxes, or posted to its room, and OK
 * queued to flush on the session's own. Stops at the first event that is no SENDTO or needs
 * more (a failure, a user on another node, a full queue, a sender away or on several devices
 * sending what the history keeps, a room whose members are to be found again): the Python
 * answers that one, as it would have; and after a message the history kept, where the sender
 * can take the common way no more. */
static PyObject *
answer_sendtos(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Run run;
    if (run_of(&run, args, nargs, "answer_sendtos(list, start, stop, session), the relay known") < 0)
        return NULL;
    PyObject *outbox = SLOT(run.session, session_offsets[SESSION_OUTBOX]);
    if (outbox == NULL || !PyObject_TypeCheck(outbox, known_type)) {
        PyErr_SetString(PyExc_TypeError, "a session with an outbox expected");
        return NULL;
    }
    Sender sender;
    int open = sender_of(run.rules, &sender);
    if (open <= 0)
        return open < 0 ? NULL : PyLong_FromSsize_t(run.start);
    Py_INCREF(outbox);  /* (the session's, which the Python the relay may run could replace) */
    Py_ssize_t index = run.start;
    int failed = 0;
    while (index < run.stop && index < PyList_GET_SIZE(run.events)) {
        PyObject *event = PyList_GET_ITEM(run.events, index);
        PyObject *recipient, *text, *raw;
        if (Py_TYPE(event) != sendto_type || (recipient = SLOT(event, sendto_offsets[SENDTO_RECIPIENT])) == NULL
            || (text = SLOT(event, sendto_offsets[SENDTO_TEXT])) == NULL
            || (raw = SLOT(event, sendto_offsets[SENDTO_RAW])) == NULL)
            break;
        Py_INCREF(event);
        int done = PyUnicode_Check(recipient) && PyUnicode_GET_LENGTH(recipient) > 0
                           && PyUnicode_READ_CHAR(recipient, 0) == '#'
                       ? post_to_room(&sender, run.rules, recipient, text, raw)
                       : relay_text_of(&sender, recipient, text, raw);
        Py_DECREF(event);
        if (done <= 0) {
            failed = done < 0;
            break;
        }
        index++;
        /* (As queue_to_flush: a closed outbox takes no reply.) */
        if (SLOT(outbox, known_offsets[CLOSED]) == Py_False && append_now(outbox, ok_reply) < 0) {
            failed = 1;
            break;
        }
        if (done == 2 && (open = sender_again(run.rules, &sender)) <= 0) {
            failed = open < 0;
            break;  /* (nothing of the sender's held any more) */
        }
    }
    Py_DECREF(outbox);
    if (open == 1)
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
    return Py_NewRef(done > 0 ? Py_True : Py_False);
}

/* --- The IRC port's PRIVMSG --------------------------------------------------------------- */

static PyTypeObject *privmsg_type, *irc_session_type;
static Py_ssize_t irc_client_offset;
static PyObject *to_name, *to_room, *name_registered, *name_quitting, *name_caps, *name_label, *name_away_of, *echo_message;

/* known_privmsg(privmsg_type, to_name, to_room, session_type, client_slot): what
 * answer_privmsgs reads: the IRC port's PRIVMSG (a tuple: tags, target, text, raw), the
 * functions from a nick to a user's name and from a channel to a room's, and the IRC port's
 * sessions, with the slot that holds their IrcClient. */
static PyObject *
known_privmsg(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyType_Check(args[0]) || !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type)
        || !PyCallable_Check(args[1]) || !PyCallable_Check(args[2]) || !PyType_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "known_privmsg(a tuple's type, to_name, to_room, the sessions' type, "
                                         "their client's slot descriptor)");
        return NULL;
    }
    if (slot_offset(args[4], &irc_client_offset) < 0)
        return NULL;
    static const Name names[] = {
        {&name_registered, "registered"}, {&name_quitting, "quitting"}, {&name_caps, "caps"},
        {&name_label, "_label"},          {&name_away_of, "away_of"},   {&echo_message, "echo-message"},
    };
    if (intern_names(names, COUNT_OF(names)) < 0)
        return NULL;
    Py_XSETREF(privmsg_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(to_name, Py_NewRef(args[1]));
    Py_XSETREF(to_room, Py_NewRef(args[2]));
    Py_XSETREF(irc_session_type, (PyTypeObject *)Py_NewRef(args[3]));
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

/* The nick a run's PRIVMSG was last relayed to, and the user it named (not away then): a
 * run's messages mostly go to one nick, which is looked up once so (the nick's name through
 * to_name's cache and the user's away message, per message). Forgotten after a message the
 * history keeps (its write may wait for the disk while others run: an away set meanwhile must
 * be seen). Both held; NULL before the first. */
typedef struct {
    PyObject *nick, *name;
} LastRecipient;

/* One PRIVMSG the common way, as IrcClient.answer and _send would (no tags, a text; to one
 * nick, the user not away, as the answer would then say; or to a channel, a room of the
 * sender's: see post_to_room): as relay_text_of, 1 or 2 done, 0 left to the Python (nothing
 * done), -1 an error. */
static int
relay_privmsg(Sender *sender, PyObject *rules, PyObject *away_of, PyObject *message, LastRecipient *last)
{
    PyObject *tags = PyTuple_GET_ITEM(message, 0), *target = PyTuple_GET_ITEM(message, 1);
    PyObject *text = PyTuple_GET_ITEM(message, 2), *raw = PyTuple_GET_ITEM(message, 3);
    if (tags != Py_None || !PyUnicode_Check(target) || PyUnicode_GET_LENGTH(target) == 0
        || PyUnicode_FindChar(target, ',', 0, PyUnicode_GET_LENGTH(target), 1) != -1)
        return 0;  /* (the text: relay_text_of's and post_to_room's to judge, by text_fits) */
    if (PyBytes_Check(raw) && PyBytes_GET_SIZE(raw) > 0 && PyBytes_AS_STRING(raw)[0] == '\x01')
        return 0;  /* (CTCP: IrcClient._send judges it) */
    if (PyUnicode_READ_CHAR(target, 0) == '#') {
        PyObject *room = PyObject_Vectorcall(to_room, &target, 1, NULL);
        if (room == NULL)
            return -1;
        int posted = room == Py_None ? 0 : post_to_room(sender, rules, room, text, raw);
        Py_DECREF(room);
        return posted;
    }
    if (last->nick != NULL) {
        int same = PyUnicode_Compare(target, last->nick);
        if (same == 0)
            return relay_text_of(sender, last->name, text, raw);
        if (same == -1 && PyErr_Occurred())
            return -1;
    }
    PyObject *name = PyObject_Vectorcall(to_name, &target, 1, NULL);
    if (name == NULL)
        return -1;
    int done = 0;
    if (name != Py_None) {
        PyObject *away = PyObject_Vectorcall(away_of, &name, 1, NULL);
        if (away == NULL)
            done = -1;
        else if (away == Py_None) {
            Py_XSETREF(last->nick, Py_NewRef(target));
            Py_XSETREF(last->name, Py_NewRef(name));
            done = relay_text_of(sender, name, text, raw);
        }
        Py_XDECREF(away);
    }
    Py_DECREF(name);
    return done;
}

/* answer_privmsgs(events, start, stop, session) -> the index of the first event left
 *
 * The IRC port's answer_sendtos, for a session of the IRC port: the PRIVMSGs of
 * events[start:stop] that take the common way (see relay_privmsg and relay_text_of) relayed,
 * as its IrcClient.answer would (whose answer to each is nothing); stops at the first that
 * does not, which the Python answers. */
static PyObject *
answer_privmsgs(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Run run;
    if (privmsg_type == NULL) {
        PyErr_SetString(PyExc_TypeError, "answer_privmsgs before known_privmsg");
        return NULL;
    }
    if (run_of(&run, args, nargs, "answer_privmsgs(list, start, stop, session), the relay known") < 0)
        return NULL;
    if (!PyObject_TypeCheck(run.session, irc_session_type)) {
        PyErr_SetString(PyExc_TypeError, "a session of the IRC port expected");
        return NULL;
    }
    Py_ssize_t index = run.start;
    if (index >= run.stop || index >= PyList_GET_SIZE(run.events)
        || Py_TYPE(PyList_GET_ITEM(run.events, index)) != privmsg_type)
        return PyLong_FromSsize_t(index);  /* (no PRIVMSG first: nothing to look up) */
    PyObject *client = SLOT(run.session, irc_client_offset);
    if (client == NULL) {
        PyErr_SetString(PyExc_AttributeError, "an IRC session not yet made");
        return NULL;
    }
    Py_INCREF(client);
    int open = client_is_plain(client);
    Sender sender;
    if (open == 1)
        open = sender_of(run.rules, &sender);
    if (open <= 0) {
        Py_DECREF(client);
        return open < 0 ? NULL : PyLong_FromSsize_t(index);
    }
    PyObject *directory = SLOT(run.rules, rules_offsets[RULES_DIRECTORY]);
    PyObject *away_of = PyObject_GetAttr(directory, name_away_of);
    int failed = away_of == NULL;
    LastRecipient last = {NULL, NULL};
    while (!failed && index < run.stop && index < PyList_GET_SIZE(run.events)) {
        PyObject *event = PyList_GET_ITEM(run.events, index);
        if (Py_TYPE(event) != privmsg_type || PyTuple_GET_SIZE(event) != 4)
            break;
        Py_INCREF(event);
        int done = relay_privmsg(&sender, run.rules, away_of, event, &last);
        Py_DECREF(event);
        if (done <= 0) {
            failed = done < 0;
            break;
        }
        index++;
        if (done == 2) {
            /* (Others may have run meanwhile: the sender and the next nick's user are read
             * afresh. The client's own state changes only with its own lines, which this
             * greenlet answers.) */
            Py_CLEAR(last.nick);
            Py_CLEAR(last.name);
            if ((open = sender_again(run.rules, &sender)) <= 0) {
                failed = open < 0;
                break;
            }
        }
    }
    /* (As IrcClient.answer does for each of them: no label is being answered.) */
    if (!failed && index > run.start && PyObject_SetAttr(client, name_label, Py_None) < 0)
        failed = 1;
    Py_XDECREF(away_of);
    Py_XDECREF(last.nick);
    Py_XDECREF(last.name);
    Py_DECREF(client);
    if (open == 1)
        sender_done(&sender);
    return failed ? NULL : PyLong_FromSsize_t(index);
}

static PyMethodDef methods[] = {
    {"known_relay", (PyCFunction)(void (*)(void))known_relay, METH_FASTCALL, "What the relay reads."},
    {"answer_sendtos", (PyCFunction)(void (*)(void))answer_sendtos, METH_FASTCALL,
     "A run of SENDTOs answered the relay's common way."},
    {"relay_text", (PyCFunction)(void (*)(void))relay_text, METH_FASTCALL, "One text relayed the common way."},
    {"known_rooms", (PyCFunction)(void (*)(void))known_rooms, METH_FASTCALL, "What a room's message reads."},
    {"known_privmsg", (PyCFunction)(void (*)(void))known_privmsg, METH_FASTCALL, "What answer_privmsgs reads."},
    {"answer_privmsgs", (PyCFunction)(void (*)(void))answer_privmsgs, METH_FASTCALL,
     "A run of the IRC port's PRIVMSGs answered the relay's common way."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_relay", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__relay(void)
{
    return PyModule_Create(&module);
}
