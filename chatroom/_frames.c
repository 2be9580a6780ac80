/* The server's reading of SENDTO frames, in C: the frame a chat is made of, most of what a
 * server decodes. It takes the common case only (a whole SENDTO frame with a well-formed body
 * of UTF-8) and leaves every other frame to codec.Decoder, which it stands in for, so both give
 * the same events; without a compiler the Python runs alone. Reading a SENDTO in Python was a
 * quarter of the server's Python time on the relay. And the frames that relay one (INCOMING,
 * DIRECT-MESSAGE to a client of version 3 or 4) and a room's message (ROOM-MESSAGE), made at
 * one go (codec's packs and joins were a sixth of the rules' work for an IRC client's message).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define HEADER_SIZE 5
#define SENDTO 0x03
#define INCOMING 0x83
#define DIRECT_MESSAGE 0x8E
#define ROOM_MESSAGE 0x89
#define ID_AND_TIME_SIZE 16

/* The instance of a class with __slots__ (a dataclass's), its fields set through their
 * descriptors, as __init__ would set them, without a call into Python. */
static PyObject *
made_with_slots(PyTypeObject *type, PyObject *descriptors, PyObject **values, Py_ssize_t count)
{
    PyObject *made = type->tp_alloc(type, 0);
    if (made == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *descriptor = PyTuple_GET_ITEM(descriptors, i);
        descrsetfunc set = Py_TYPE(descriptor)->tp_descr_set;
        if (set == NULL || set(descriptor, made, values[i]) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "a field without a settable descriptor");
            Py_DECREF(made);
            return NULL;
        }
    }
    return made;
}

/* sendto_frames(data, offset, events, sendto, descriptors, max_body) -> offset
 *
 * Appends to events a SendTo (made as made_with_slots makes it: recipient, text, raw) for each
 * SENDTO frame from offset on, as far as they are whole, within max_body and well formed;
 * answers where the first frame it left begins. */
static PyObject *
sendto_frames(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t offset, max_body;
    PyObject *events, *sendto, *descriptors;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*nO!O!O!n", &view, &offset, &PyList_Type, &events, &PyType_Type, &sendto,
                          &PyTuple_Type, &descriptors, &max_body))
        return NULL;
    if (PyTuple_GET_SIZE(descriptors) != 3) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "three descriptors: recipient, text, raw");
        return NULL;
    }
    const unsigned char *data = view.buf;
    Py_ssize_t size = view.len, at = offset < 0 ? 0 : offset;
    while (size - at >= HEADER_SIZE && data[at] == SENDTO) {
        Py_ssize_t length = ((Py_ssize_t)data[at + 1] << 24) | (data[at + 2] << 16) | (data[at + 3] << 8)
                            | data[at + 4];
        Py_ssize_t body = at + HEADER_SIZE, end = body + length;
        if (length > max_body || end > size || length == 0)
            break;
        Py_ssize_t name_end = body + 1 + data[body];
        if (name_end > end)
            break;
        PyObject *values[3];
        values[0] = PyUnicode_DecodeUTF8((const char *)data + body + 1, name_end - body - 1, "strict");
        values[1] = values[0] ? PyUnicode_DecodeUTF8((const char *)data + name_end, end - name_end, "strict") : NULL;
        values[2] = values[1] ? PyBytes_FromStringAndSize((const char *)data + name_end, end - name_end) : NULL;
        PyObject *event = values[2] ? made_with_slots((PyTypeObject *)sendto, descriptors, values, 3) : NULL;
        for (int i = 0; i < 3; i++)
            Py_XDECREF(values[i]);
        if (event == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear(); /* not UTF-8: the Python decoder says so (Malformed) */
                break;
            }
            goto fail;
        }
        int appended = PyList_Append(events, event);
        Py_DECREF(event);
        if (appended < 0)
            goto fail;
        at = end;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(at);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

static void
put_big_endian(unsigned char *at, unsigned long long value, int size)
{
    for (int i = size - 1; i >= 0; i--, value >>= 8)
        at[i] = (unsigned char)(value & 0xFF);
}

/* A name's UTF-8 (kept by the str) for a name field, its size in *size; NULL if it does not fit. */
static const char *
name_of(PyObject *name, Py_ssize_t *size)
{
    const char *utf8 = PyUnicode_AsUTF8AndSize(name, size);
    if (utf8 != NULL && *size > 255) {
        PyErr_Format(PyExc_ValueError, "name too long for a name field: %zd bytes", *size);
        return NULL;
    }
    return utf8;
}

/* The frame of kind: its header, the room's name field if a room is given (NULL: none), the
 * sender's name field (each its length, then the name in UTF-8), the id and time if with_id
 * (unsigned, big-endian), then text. */
static PyObject *
message_frame(unsigned char kind, PyObject *room, PyObject *sender, int with_id, unsigned long long message_id,
              unsigned long long time_ms, PyObject *text)
{
    Py_ssize_t room_size = 0, name_size;
    const char *room_name = room == NULL ? "" : name_of(room, &room_size);
    const char *name = room_name == NULL ? NULL : name_of(sender, &name_size);
    if (name == NULL)
        return NULL;
    Py_ssize_t text_size = PyBytes_GET_SIZE(text);
    Py_ssize_t length = (room == NULL ? 0 : 1 + room_size) + 1 + name_size + (with_id ? ID_AND_TIME_SIZE : 0) + text_size;
    if (length > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_OverflowError, "a frame's body is at most 2**32 - 1 bytes");
        return NULL;
    }
    PyObject *made = PyBytes_FromStringAndSize(NULL, HEADER_SIZE + length);
    if (made == NULL)
        return NULL;
    unsigned char *at = (unsigned char *)PyBytes_AS_STRING(made);
    at[0] = kind;
    put_big_endian(at + 1, (unsigned long long)length, 4);
    at += HEADER_SIZE;
    if (room != NULL) {
        *at++ = (unsigned char)room_size;
        memcpy(at, room_name, room_size);
        at += room_size;
    }
    *at++ = (unsigned char)name_size;
    memcpy(at, name, name_size);
    at += name_size;
    if (with_id) {
        put_big_endian(at, message_id, 8);
        put_big_endian(at + 8, time_ms, 8);
        at += ID_AND_TIME_SIZE;
    }
    memcpy(at, PyBytes_AS_STRING(text), text_size);
    return made;
}

/* The id and time of args (Python ints), into *message_id and *time_ms: 0, or -1 with the error set. */
static int
id_and_time(PyObject *const *args, unsigned long long *message_id, unsigned long long *time_ms)
{
    *message_id = PyLong_AsUnsignedLongLong(args[0]);
    if (*message_id == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *time_ms = PyLong_AsUnsignedLongLong(args[1]);
    if (*time_ms == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    return 0;
}

/* The DIRECT-MESSAGE frame of C ints (direct_message_frame's; also _relay.c's, through the
 * capsule direct_message). */
static PyObject *
direct_message(PyObject *sender, unsigned long long message_id, unsigned long long time_ms, PyObject *text)
{
    if (!PyUnicode_Check(sender) || !PyBytes_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "direct_message_frame(sender: str, message_id, time_ms, text: bytes)");
        return NULL;
    }
    return message_frame(DIRECT_MESSAGE, NULL, sender, 1, message_id, time_ms, text);
}

/* direct_message_frame(sender, message_id, time_ms, text) -> the DIRECT-MESSAGE frame */
static PyObject *
direct_message_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    unsigned long long message_id, time_ms;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "direct_message_frame(sender: str, message_id, time_ms, text: bytes)");
        return NULL;
    }
    if (id_and_time(args + 1, &message_id, &time_ms) < 0)
        return NULL;
    return direct_message(args[0], message_id, time_ms, args[3]);
}

/* room_message_frame(room, sender, message_id, time_ms, text) -> the ROOM-MESSAGE frame */
static PyObject *
room_message_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1]) || !PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "room_message_frame(room: str, sender: str, message_id, time_ms, text: bytes)");
        return NULL;
    }
    unsigned long long message_id, time_ms;
    if (id_and_time(args + 2, &message_id, &time_ms) < 0)
        return NULL;
    return message_frame(ROOM_MESSAGE, args[0], args[1], 1, message_id, time_ms, args[4]);
}

/* incoming_frame(sender, text) -> the INCOMING frame */
static PyObject *
incoming_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "incoming_frame(sender: str, text: bytes)");
        return NULL;
    }
    return message_frame(INCOMING, NULL, args[0], 0, 0, 0, args[1]);
}

static PyMethodDef methods[] = {
    {"sendto_frames", sendto_frames, METH_VARARGS, "SendTo events for the common SENDTO frames from offset on."},
    {"direct_message_frame", (PyCFunction)(void (*)(void))direct_message_frame, METH_FASTCALL,
     "The DIRECT-MESSAGE frame of a sender, an id, a time and a text."},
    {"incoming_frame", (PyCFunction)(void (*)(void))incoming_frame, METH_FASTCALL,
     "The INCOMING frame of a sender and a text."},
    {"room_message_frame", (PyCFunction)(void (*)(void))room_message_frame, METH_FASTCALL,
     "The ROOM-MESSAGE frame of a room, a sender, an id, a time and a text."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_frames", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__frames(void)
{
    static PyObject *(*const direct_message_function)(PyObject *, unsigned long long, unsigned long long,
                                                       PyObject *) = direct_message;
    PyObject *made = PyModule_Create(&module);
    PyObject *capsule =
        made == NULL ? NULL : PyCapsule_New((void *)&direct_message_function, "chatroom.direct_message", NULL);
    if (capsule == NULL || PyModule_AddObject(made, "direct_message", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_XDECREF(made);
        return NULL;
    }
    return made;
}
