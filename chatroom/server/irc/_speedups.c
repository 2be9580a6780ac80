/* The IRC port's two loops over bytes, in C: reading PRIVMSG lines, and writing the PRIVMSG
 * lines of direct messages. Each does only the common case and hands every other line or frame
 * back to the Python it stands in for (lines.py, translate.py), so both paths give the same
 * result; without a compiler the Python runs alone. Reading and writing lines took as much
 * of the server's time as the whole of a message's way through the chatroom protocol.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define HEADER_SIZE 5
#define ID_AND_TIME_SIZE 16
#define INCOMING 0x83
#define DIRECT_MESSAGE 0x8E
#define IRC_LINES 0xFF

/* read_messages(data, end, privmsg, message, too_long, max_received, max_line) -> list
 *
 * The messages of the lines in data[:end] (each ends with LF): a line "PRIVMSG target :text"
 * becomes privmsg's instance (a tuple subclass: tags None, target, text, the text's bytes)
 * made here; a line over max_received bytes too_long(); an empty one (spaces, CRs) nothing;
 * any other, message(line), the Python reader's own answer for it. */
static PyObject *
read_messages(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t end, max_received, max_line;
    PyObject *privmsg_type, *message, *too_long;
    if (!PyArg_ParseTuple(args, "y*nOOOnn", &view, &end, &privmsg_type, &message, &too_long,
                          &max_received, &max_line))
        return NULL;
    if (!PyType_Check(privmsg_type) || !PyType_IsSubtype((PyTypeObject *)privmsg_type, &PyTuple_Type)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "privmsg must be a subclass of tuple");
        return NULL;
    }
    const char *buf = view.buf;
    if (end < 0 || end > view.len)
        end = view.len;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        goto fail;
    Py_ssize_t start = 0;
    while (start < end) {
        const char *newline = memchr(buf + start, '\n', end - start);
        if (newline == NULL)
            break;
        Py_ssize_t line_end = newline - buf, next = line_end + 1;
        PyObject *item = NULL;
        if (line_end - start > max_received) {
            item = PyObject_CallNoArgs(too_long);
        } else {
            while (line_end > start && buf[line_end - 1] == '\r')
                line_end--;
            Py_ssize_t at = start;
            while (at < line_end && buf[at] == ' ')
                at++;
            if (at == line_end) { /* nothing but spaces */
                start = next;
                continue;
            }
            const char *line = buf + start;
            Py_ssize_t length = line_end - start;
            if (length > 8 && memcmp(line, "PRIVMSG ", 8) == 0 && length + 2 <= max_line
                && memchr(line, '\0', length) == NULL && memchr(line, '\r', length) == NULL) {
                const char *target = line + 8, *stop = line + length, *colon = NULL;
                for (const char *p = target; p + 1 < stop; p++) {
                    if (p[0] == ' ') {
                        if (p[1] == ':')
                            colon = p;
                        break; /* a space in the target: not the common case */
                    }
                }
                if (colon != NULL && colon > target && target[0] != ':') {
                    const char *text = colon + 2;
                    PyObject *fields = PyTuple_New(4);
                    PyObject *target_str = PyUnicode_DecodeUTF8(target, colon - target, "strict");
                    PyObject *text_str = target_str ? PyUnicode_DecodeUTF8(text, stop - text, "strict") : NULL;
                    PyObject *raw = text_str ? PyBytes_FromStringAndSize(text, stop - text) : NULL;
                    if (fields != NULL && raw != NULL) {
                        Py_INCREF(Py_None);
                        PyTuple_SET_ITEM(fields, 0, Py_None);
                        PyTuple_SET_ITEM(fields, 1, target_str);
                        PyTuple_SET_ITEM(fields, 2, text_str);
                        PyTuple_SET_ITEM(fields, 3, raw);
                        PyObject *new_args = PyTuple_Pack(1, fields);
                        Py_DECREF(fields);
                        if (new_args == NULL)
                            goto fail_out;
                        item = PyTuple_Type.tp_new((PyTypeObject *)privmsg_type, new_args, NULL);
                        Py_DECREF(new_args);
                        if (item == NULL)
                            goto fail_out;
                    } else {
                        Py_XDECREF(fields);
                        Py_XDECREF(target_str);
                        Py_XDECREF(text_str);
                        Py_XDECREF(raw);
                        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                            goto fail_out;
                        PyErr_Clear(); /* not UTF-8: the Python reader says what it is */
                    }
                }
            }
            if (item == NULL) {
                PyObject *bytes = PyBytes_FromStringAndSize(line, length);
                if (bytes == NULL)
                    goto fail_out;
                item = PyObject_CallOneArg(message, bytes);
                Py_DECREF(bytes);
            }
        }
        if (item == NULL)
            goto fail_out;
        int appended = PyList_Append(out, item);
        Py_DECREF(item);
        if (appended < 0)
            goto fail_out;
        start = next;
    }
    PyBuffer_Release(&view);
    return out;
fail_out:
    Py_DECREF(out);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

/* One INCOMING or DIRECT-MESSAGE frame at offset, as a PRIVMSG line's parts, if it is the
 * common case: its sender's source known, one line of text, within max_line. */
typedef struct {
    const char *source, *text;
    Py_ssize_t source_size, text_size;
} DirectLine;

static int
direct_line_of(const unsigned char *data, Py_ssize_t offset, Py_ssize_t end, PyObject *sources,
               Py_ssize_t middle_size, Py_ssize_t max_line, DirectLine *line)
{
    Py_ssize_t name_end = offset + 6 + data[offset + 5];
    Py_ssize_t text_at = name_end + (data[offset] == DIRECT_MESSAGE ? ID_AND_TIME_SIZE : 0);
    if (text_at > end)
        return 0;
    Py_ssize_t text_size = end - text_at;
    if (memchr(data + text_at, '\n', text_size) != NULL || memchr(data + text_at, '\r', text_size) != NULL)
        return 0;
    PyObject *sender = PyBytes_FromStringAndSize((const char *)data + offset + 6, name_end - offset - 6);
    if (sender == NULL)
        return -1;
    PyObject *source = PyDict_GetItemWithError(sources, sender); /* borrowed */
    Py_DECREF(sender);
    if (source == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyBytes_Check(source))
        return 0;
    Py_ssize_t source_size = PyBytes_GET_SIZE(source);
    if (source_size + middle_size + text_size + 2 > max_line)
        return 0;
    line->source = PyBytes_AS_STRING(source);
    line->source_size = source_size;
    line->text = (const char *)data + text_at;
    line->text_size = text_size;
    return 1;
}

/* The frame at offset's end, or -1 if its header or body is not all in data[:size]. */
static Py_ssize_t
frame_end_at(const unsigned char *data, Py_ssize_t offset, Py_ssize_t size)
{
    if (size - offset < HEADER_SIZE)
        return -1;
    Py_ssize_t length = ((Py_ssize_t)data[offset + 1] << 24) | (data[offset + 2] << 16) | (data[offset + 3] << 8)
                        | data[offset + 4];
    Py_ssize_t end = offset + HEADER_SIZE + length;
    return end <= size ? end : -1;
}

/* How much of a frame is this walk's (0: stop here): IRC_LINES' body, or a direct line. */
static int
take(const unsigned char *data, Py_ssize_t offset, Py_ssize_t end, PyObject *sources, Py_ssize_t middle_size,
     Py_ssize_t max_line, DirectLine *line, Py_ssize_t *size)
{
    unsigned char kind = data[offset];
    if (kind == IRC_LINES) {
        *size = end - offset - HEADER_SIZE;
        line->source = NULL;
        return 1;
    }
    if (kind != INCOMING && kind != DIRECT_MESSAGE)
        return 0;
    if (end - offset < HEADER_SIZE + 1)
        return 0;
    int found = direct_line_of(data, offset, end, sources, middle_size, max_line, line);
    if (found > 0)
        *size = line->source_size + middle_size + line->text_size + 2;
    return found;
}

/* direct_lines(data, offset, middle, sources, max_line) -> (lines, offset)
 *
 * The lines for the frames of data from offset on, as far as they are IRC_LINES (their body
 * as it is) or untagged direct messages in the common case (sources[sender] + middle + text +
 * CR LF, middle being b" PRIVMSG nick :"), and where the first frame it left begins: the
 * Python translation takes that one on. */
static PyObject *
direct_lines(PyObject *module, PyObject *args)
{
    Py_buffer view, middle;
    Py_ssize_t offset, max_line;
    PyObject *sources;
    if (!PyArg_ParseTuple(args, "y*ny*O!n", &view, &offset, &middle, &PyDict_Type, &sources, &max_line))
        return NULL;
    const unsigned char *data = view.buf;
    Py_ssize_t size = view.len, total = 0, at = offset < 0 ? 0 : offset, end;
    DirectLine line;
    Py_ssize_t piece = 0;
    int found = 0;
    /* First the size of what is taken, then the bytes: one allocation. */
    while (at < size && (end = frame_end_at(data, at, size)) >= 0
           && (found = take(data, at, end, sources, middle.len, max_line, &line, &piece)) > 0) {
        total += piece;
        at = end;
    }
    PyObject *result = NULL;
    if (found < 0)
        goto done;
    PyObject *lines = PyBytes_FromStringAndSize(NULL, total);
    if (lines == NULL)
        goto done;
    char *write = PyBytes_AS_STRING(lines);
    Py_ssize_t stop = at;
    for (at = offset < 0 ? 0 : offset; at < stop; at = end) {
        end = frame_end_at(data, at, size);
        take(data, at, end, sources, middle.len, max_line, &line, &piece);
        if (line.source == NULL) {
            memcpy(write, data + at + HEADER_SIZE, piece);
        } else {
            memcpy(write, line.source, line.source_size);
            memcpy(write + line.source_size, middle.buf, middle.len);
            memcpy(write + line.source_size + middle.len, line.text, line.text_size);
            memcpy(write + piece - 2, "\r\n", 2);
        }
        write += piece;
    }
    result = Py_BuildValue("(Nn)", lines, stop);
done:
    PyBuffer_Release(&view);
    PyBuffer_Release(&middle);
    return result;
}

static PyMethodDef methods[] = {
    {"read_messages", read_messages, METH_VARARGS, "The messages of the whole lines in data[:end]."},
    {"direct_lines", direct_lines, METH_VARARGS, "The lines of the common frames from offset on."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
