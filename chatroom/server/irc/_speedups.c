/* The IRC port's loops over bytes, in C: reading PRIVMSG lines, writing the PRIVMSG lines of
 * direct messages, and those of room messages (made, tagged and kept for a room's other
 * members). Each does only the common case and hands every other line or frame back to the
 * Python it stands in for (lines.py, translate.py), so both paths give the same result;
 * without a compiler the Python runs alone. Reading and writing lines took as much
 * of the server's time as the whole of a message's way through the chatroom protocol.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <time.h>

#define HEADER_SIZE 5
#define ID_AND_TIME_SIZE 16
#define INCOMING 0x83
#define DIRECT_MESSAGE 0x8E
#define IRC_LINES 0xFF
#define ROOM_MESSAGE 0x89

/* read_messages(data, end, privmsg, message, too_long, max_received, max_line) -> list
 *
 * The messages of the lines in data[:end] (each ends with LF): a line "PRIVMSG target :text"
 * becomes privmsg's instance (a tuple subclass: tags None, target, text, the text's bytes)
 * made here; a line over max_received bytes too_long(); an empty one (spaces, CRs) nothing;
 * any other, message(line), the Python reader's own answer for it. */
static PyObject *
read_messages(PyObject *module, PyObject *args)
{
    (void)module;
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
                    PyObject *target_str = PyUnicode_DecodeUTF8(target, colon - target, "strict");
                    PyObject *text_str = target_str ? PyUnicode_DecodeUTF8(text, stop - text, "strict") : NULL;
                    PyObject *raw = text_str ? PyBytes_FromStringAndSize(text, stop - text) : NULL;
                    /* (made as tuple.__new__ makes an instance of a subclass: allocated, filled) */
                    item = raw ? ((PyTypeObject *)privmsg_type)->tp_alloc((PyTypeObject *)privmsg_type, 4) : NULL;
                    if (item != NULL) {
                        Py_INCREF(Py_None);
                        PyTuple_SET_ITEM(item, 0, Py_None);
                        PyTuple_SET_ITEM(item, 1, target_str);
                        PyTuple_SET_ITEM(item, 2, text_str);
                        PyTuple_SET_ITEM(item, 3, raw);
                    } else {
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

/* What a walk over frames writes: a buffer that grows (on the stack while it is small, as a
 * batch's lines mostly are), made into bytes at the end. */
typedef struct {
    char *bytes;
    Py_ssize_t size, capacity;
    char on_stack[8192];
} Written;

static void
written_start(Written *out)
{
    out->bytes = out->on_stack;
    out->size = 0;
    out->capacity = sizeof out->on_stack;
}

static void
written_release(Written *out)
{
    if (out->bytes != out->on_stack)
        PyMem_Free(out->bytes);
}

static int
write_bytes(Written *out, const void *bytes, Py_ssize_t size)
{
    if (out->size + size > out->capacity) {
        Py_ssize_t capacity = out->capacity * 2;
        while (capacity < out->size + size)
            capacity *= 2;
        char *grown = PyMem_Malloc(capacity);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(grown, out->bytes, out->size);
        if (out->bytes != out->on_stack)
            PyMem_Free(out->bytes);
        out->bytes = grown;
        out->capacity = capacity;
    }
    memcpy(out->bytes + out->size, bytes, size);
    out->size += size;
    return 0;
}

static unsigned long long
u64_at(const unsigned char *data)
{
    unsigned long long value = 0;
    for (int i = 0; i < 8; i++)
        value = (value << 8) | data[i];
    return value;
}

/* The decimal digits of value at to (20 at the most), without a leading zero: their count.
 * (A message's id has 19 digits: a division by ten for each, one after the other, was most of
 * what its msgid tag cost; here two divisions in 64 bits split it into parts of eight digits,
 * and each part is written two digits at a time in 32 bits.) */
static int
write_decimal(char *to, unsigned long long value)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    char digits[24];
    char *at = digits + sizeof digits;
    do {
        unsigned int part = (unsigned int)(value % 100000000u);
        value /= 100000000u;
        for (int pair = 0; pair < 4; pair++, part /= 100) {
            at -= 2;
            memcpy(at, pairs + 2 * (part % 100), 2);
        }
    } while (value != 0);
    while (at < digits + sizeof digits - 1 && *at == '0')
        at++;
    int size = (int)(digits + sizeof digits - at);
    memcpy(to, at, size);
    return size;
}

/* The tags tags.message_tags gives a message to a reader taking ``tags`` (TAG_*
 * flags), written as lines.tags_written writes them, with the space after them: 0 written,
 * 1 none to write, -1 an error, -2 a case left to Python (an account name or a channel with a
 * character to escape, a time gmtime cannot write). *registered: whether the sender is an
 * account, -1 if not known yet (then is_account is asked, and *registered set). ``channel``: a
 * room's message's (its msgid is tags.room_msgid's), NULL for a direct message. */
#define TAG_ACCOUNT 1
#define TAG_MSGID 2
#define TAG_TIME 4

static int
write_tags(Written *out, int tags, PyObject *is_account, const char *sender, Py_ssize_t sender_size,
           int *registered, unsigned long long message_id, unsigned long long time_ms, const char *channel,
           Py_ssize_t channel_size)
{
    char buffer[96];
    int count = 0;
    if (tags & TAG_ACCOUNT) {
        if (*registered < 0) {
            PyObject *name = PyUnicode_DecodeUTF8(sender, sender_size, "strict");
            if (name == NULL)
                return -1;
            PyObject *answer = PyObject_CallOneArg(is_account, name);
            Py_DECREF(name);
            if (answer == NULL)
                return -1;
            *registered = PyObject_IsTrue(answer);
            Py_DECREF(answer);
            if (*registered < 0)
                return -1;
        }
        if (*registered) {
            for (Py_ssize_t i = 0; i < sender_size; i++)
                if (strchr("; \\\r\n", sender[i]) != NULL || sender[i] == '\0')
                    return -2;
            if (write_bytes(out, "@account=", 9) < 0 || write_bytes(out, sender, sender_size) < 0)
                return -1;
            count++;
        }
    }
    if ((tags & TAG_MSGID) && message_id != 0) {
        memcpy(buffer, count ? ";msgid=" : "@msgid=", 7);
        int size = 7 + write_decimal(buffer + 7, message_id);
        if (channel != NULL) { /* ID-TIME-CHANNEL */
            if (memchr(channel, '\\', channel_size) != NULL)
                return -2;
            buffer[size++] = '-';
            size += write_decimal(buffer + size, time_ms);
            buffer[size++] = '-';
        }
        if (write_bytes(out, buffer, size) < 0 || (channel != NULL && write_bytes(out, channel, channel_size) < 0))
            return -1;
        count++;
    }
    if (tags & TAG_TIME) {
        /* (The second's text is kept: the messages of a moment mostly share it.) */
        static unsigned long long second_written = ~0ULL;
        static char second_text[20]; /* YYYY-MM-DDTHH:MM:SS */
        unsigned long long second = time_ms / 1000;
        if (second != second_written) {
            time_t seconds = (time_t)second;
            struct tm moment;
            if (second > 253402300799ULL || gmtime_r(&seconds, &moment) == NULL)
                return -2; /* (past the year 9999) */
            snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d", moment.tm_year + 1900,
                     moment.tm_mon + 1, moment.tm_mday, moment.tm_hour, moment.tm_min, moment.tm_sec);
            memcpy(second_text, buffer, 19);
            second_written = second;
        }
        int millis = (int)(time_ms % 1000);
        memcpy(buffer, count ? ";time=" : "@time=", 6);
        memcpy(buffer + 6, second_text, 19);
        buffer[25] = '.';
        buffer[26] = (char)('0' + millis / 100);
        buffer[27] = (char)('0' + millis / 10 % 10);
        buffer[28] = (char)('0' + millis % 10);
        buffer[29] = 'Z';
        if (write_bytes(out, buffer, 30) < 0)
            return -1;
        count++;
    }
    if (count && write_bytes(out, " ", 1) < 0)
        return -1;
    return count ? 0 : 1;
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

/* The sender of the direct message last written in one call: its name, its source
 * (sources[name]) and whether it is an account (-1: not asked yet). A batch's messages are
 * mostly one sender's, looked up once so (per message, the lookups and is_account's two Python
 * calls were a fifth of what the tags cost). */
typedef struct {
    char name[256]; /* (a name's size is a byte) */
    Py_ssize_t size; /* -1: none yet */
    PyObject *source;
    int registered;
} LastSender;

static void
last_sender_start(LastSender *last)
{
    last->size = -1;
    last->source = NULL;
    last->registered = -1;
}

static void
last_sender_release(LastSender *last)
{
    Py_CLEAR(last->source);
}

/* sources[sender], through last (which it then is): borrowed from last; NULL, without an
 * error, where sources has none. */
static PyObject *
source_of(LastSender *last, PyObject *sources, const char *sender, Py_ssize_t sender_size)
{
    if (last->size == sender_size && memcmp(last->name, sender, sender_size) == 0)
        return last->source;
    PyObject *key = PyBytes_FromStringAndSize(sender, sender_size);
    if (key == NULL)
        return NULL;
    PyObject *source = PyDict_GetItemWithError(sources, key); /* borrowed */
    Py_DECREF(key);
    if (source == NULL)
        return NULL;
    Py_XSETREF(last->source, Py_NewRef(source));
    memcpy(last->name, sender, sender_size);
    last->size = sender_size;
    last->registered = -1;
    return source;
}

/* Whether text holds what ends an IRC line (LF, CR) or is not allowed in one (NUL): such a
   text is the Python translation's, which writes it as lines that can carry it. */
static int
breaks_line(const char *text, Py_ssize_t size)
{
    return memchr(text, '\n', size) != NULL || memchr(text, '\r', size) != NULL
           || memchr(text, '\0', size) != NULL;
}

/* Writes the line of the frame at [offset, end) if it is the common case: 1 written, 0 left
 * to Python (written rolled back), -1 an error. */
static int
write_line(Written *out, const unsigned char *data, Py_ssize_t offset, Py_ssize_t end, const char *middle,
           Py_ssize_t middle_size, PyObject *sources, Py_ssize_t max_line, int tags, PyObject *is_account,
           LastSender *last)
{
    unsigned char kind = data[offset];
    if (kind == IRC_LINES)
        return write_bytes(out, data + offset + HEADER_SIZE, end - offset - HEADER_SIZE) < 0 ? -1 : 1;
    if ((kind != INCOMING && kind != DIRECT_MESSAGE) || end - offset < HEADER_SIZE + 1)
        return 0;
    if (tags && kind != DIRECT_MESSAGE)
        return 0; /* (tagged without an id: the time is now's, which Python reads) */
    Py_ssize_t name_end = offset + 6 + data[offset + 5];
    Py_ssize_t text_at = name_end + (kind == DIRECT_MESSAGE ? ID_AND_TIME_SIZE : 0);
    if (text_at > end)
        return 0;
    const char *text = (const char *)data + text_at, *sender = (const char *)data + offset + 6;
    Py_ssize_t text_size = end - text_at, sender_size = name_end - offset - 6;
    if (breaks_line(text, text_size))
        return 0;
    PyObject *source = source_of(last, sources, sender, sender_size);
    if (source == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyBytes_Check(source) || PyBytes_GET_SIZE(source) + middle_size + text_size + 2 > max_line)
        return 0;
    Py_ssize_t before = out->size;
    if (tags) { /* (source stays last's meanwhile: only source_of changes that) */
        int written = write_tags(out, tags, is_account, sender, sender_size, &last->registered,
                                 u64_at(data + name_end), u64_at(data + name_end + 8), NULL, 0);
        if (written < 0) {
            out->size = before;
            return written == -2 ? 0 : -1;
        }
    }
    int failed = write_bytes(out, PyBytes_AS_STRING(source), PyBytes_GET_SIZE(source)) < 0
                 || write_bytes(out, middle, middle_size) < 0 || write_bytes(out, text, text_size) < 0
                 || write_bytes(out, "\r\n", 2) < 0;
    return failed ? -1 : 1;
}

/* Writes the lines of the frames of data[*at:size] while each is write_line's common case,
 * moving *at past them: 1 all written, 0 stopped at a frame left to Python, -1 an error. */
static int
write_frames(Written *out, const unsigned char *data, Py_ssize_t *at, Py_ssize_t size, const char *middle,
             Py_ssize_t middle_size, PyObject *sources, Py_ssize_t max_line, int tags, PyObject *is_account,
             LastSender *last)
{
    while (*at < size) {
        Py_ssize_t end = frame_end_at(data, *at, size);
        int written = end < 0 ? 0
                              : write_line(out, data, *at, end, middle, middle_size, sources, max_line, tags,
                                           is_account, last);
        if (written <= 0)
            return written;
        *at = end;
    }
    return 1;
}

/* direct_lines(data, offset, middle, sources, max_line, tags=0, is_account=None) -> (lines, offset)
 *
 * The lines for the frames of data from offset on, as far as they are IRC_LINES (their body
 * as it is) or direct messages in the common case (their tags, as ``tags`` says the reader
 * takes them, then sources[sender] + middle + text + CR LF, middle being b" PRIVMSG nick :"),
 * and where the first frame it left begins: the Python translation takes that one on. */
static PyObject *
direct_lines(PyObject *module, PyObject *args)
{
    Py_buffer view, middle;
    Py_ssize_t offset, max_line;
    PyObject *sources, *is_account = Py_None;
    int tags = 0;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*ny*O!n|iO", &view, &offset, &middle, &PyDict_Type, &sources, &max_line, &tags,
                          &is_account))
        return NULL;
    PyObject *result = NULL;
    if ((tags & TAG_ACCOUNT) && !PyCallable_Check(is_account)) {
        PyErr_SetString(PyExc_TypeError, "is_account must be callable for the account tag");
        goto done;
    }
    Py_ssize_t at = offset < 0 ? 0 : offset;
    Written out;
    written_start(&out);
    LastSender last;
    last_sender_start(&last);
    if (write_frames(&out, view.buf, &at, view.len, middle.buf, middle.len, sources, max_line, tags, is_account,
                     &last)
        >= 0)
        result = Py_BuildValue("(y#n)", out.bytes, out.size, at);
    last_sender_release(&last);
    written_release(&out);
done:
    PyBuffer_Release(&view);
    PyBuffer_Release(&middle);
    return result;
}

/* The PRIVMSG line of a room's message (a chunk that is the one frame) made here, as
 * translate._new_room_line makes it, and kept in made for the other members (the lines of the
 * last 256 messages are kept, the tagged ones with them): borrowed from made. NULL, without an
 * error, where Python makes it (a text of several lines, a line too long, a sender or a room
 * whose words are not known yet: Python learns them). */
static PyObject *
new_room_line(PyObject *chunk, PyObject *made, PyObject *tagged, PyObject *sources, PyObject *channels,
              Py_ssize_t max_line)
{
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(chunk);
    Py_ssize_t size = PyBytes_GET_SIZE(chunk);
    if (frame_end_at(data, 0, size) != size || size < HEADER_SIZE + 1)
        return NULL;
    Py_ssize_t room_end = 6 + data[5];
    if (room_end >= size)
        return NULL;
    Py_ssize_t sender_end = room_end + 1 + data[room_end], text_at = sender_end + ID_AND_TIME_SIZE;
    if (text_at > size)
        return NULL;
    const char *text = (const char *)data + text_at;
    Py_ssize_t text_size = size - text_at;
    if (breaks_line(text, text_size))
        return NULL;
    PyObject *room = PyBytes_FromStringAndSize((const char *)data + 6, room_end - 6);
    PyObject *sender = room ? PyBytes_FromStringAndSize((const char *)data + room_end + 1, sender_end - room_end - 1)
                            : NULL;
    PyObject *channel = sender ? PyDict_GetItemWithError(channels, room) : NULL;
    PyObject *source = channel ? PyDict_GetItemWithError(sources, sender) : NULL;
    Py_XDECREF(room);
    Py_XDECREF(sender);
    if (source == NULL || !PyBytes_Check(source) || !PyBytes_Check(channel))
        return NULL;
    Py_ssize_t source_size = PyBytes_GET_SIZE(source), channel_size = PyBytes_GET_SIZE(channel);
    Py_ssize_t line_size = source_size + 9 + channel_size + 2 + text_size + 2;
    if (line_size > max_line)
        return NULL;
    PyObject *line = PyBytes_FromStringAndSize(NULL, line_size);
    if (line == NULL)
        return NULL;
    char *at = PyBytes_AS_STRING(line);
    memcpy(at, PyBytes_AS_STRING(source), source_size);
    at += source_size;
    memcpy(at, " PRIVMSG ", 9);
    memcpy(at + 9, PyBytes_AS_STRING(channel), channel_size);
    at += 9 + channel_size;
    memcpy(at, " :", 2);
    memcpy(at + 2, text, text_size);
    memcpy(at + 2 + text_size, "\r\n", 2);
    if (PyDict_GET_SIZE(made) > 256) {
        PyDict_Clear(made);
        PyDict_Clear(tagged);
    }
    int kept = PyDict_SetItem(made, chunk, line);
    Py_DECREF(line);
    return kept < 0 ? NULL : PyDict_GetItemWithError(made, chunk);
}

/* A room's line (untagged) with the tags a reader taking ``taken`` (TAG_* flags ``tags``)
 * reads on it, as translate.tagged writes them, kept in tagged[taken][chunk] for the other members
 * taking the same: borrowed from there. NULL, without an error, where Python writes them. */
static PyObject *
new_tagged_line(PyObject *chunk, PyObject *untagged, PyObject *tagged, PyObject *taken, int tags, PyObject *is_account)
{
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(chunk);
    Py_ssize_t room_end = 6 + data[5];
    Py_ssize_t sender_end = room_end + 1 + data[room_end];
    if (sender_end + ID_AND_TIME_SIZE > PyBytes_GET_SIZE(chunk))
        return NULL;
    /* (The channel, for the msgid, as the line has it: ":SOURCE PRIVMSG CHANNEL :TEXT".) */
    const char *line = PyBytes_AS_STRING(untagged), *line_end = line + PyBytes_GET_SIZE(untagged);
    const char *channel = memchr(line, ' ', line_end - line);
    if (channel == NULL || line_end - channel < 9 || memcmp(channel, " PRIVMSG ", 9) != 0)
        return NULL;
    channel += 9;
    const char *channel_end = memchr(channel, ' ', line_end - channel);
    if (channel_end == NULL)
        return NULL;
    Written out;
    written_start(&out);
    PyObject *result = NULL;
    Py_INCREF(untagged); /* (is_account is Python, which could let go of the line meanwhile) */
    int registered = -1;
    int written = write_tags(&out, tags, is_account, (const char *)data + room_end + 1, sender_end - room_end - 1,
                             &registered, u64_at(data + sender_end), u64_at(data + sender_end + 8), channel,
                             channel_end - channel);
    if (written >= 0 && write_bytes(&out, PyBytes_AS_STRING(untagged), PyBytes_GET_SIZE(untagged)) == 0) {
        PyObject *line = PyBytes_FromStringAndSize(out.bytes, out.size);
        PyObject *so_tagged = line ? PyDict_GetItemWithError(tagged, taken) : NULL;
        if (line != NULL && so_tagged == NULL && !PyErr_Occurred()) {
            so_tagged = PyDict_New();
            if (so_tagged != NULL && PyDict_SetItem(tagged, taken, so_tagged) < 0)
                Py_CLEAR(so_tagged);
            Py_XDECREF(so_tagged); /* (the dict holds it now) */
        }
        if (so_tagged != NULL && PyDict_Check(so_tagged) && PyDict_SetItem(so_tagged, chunk, line) == 0)
            result = PyDict_GetItemWithError(so_tagged, chunk);
        Py_XDECREF(line);
    }
    Py_DECREF(untagged);
    written_release(&out);
    return result; /* (a case left to Python, written == -2, gives NULL without an error) */
}

/* The line of a room's message chunk for chunk_lines, borrowed from made or tagged (made here
 * if it is the first member's); *skip set for the reader's own message where it takes nothing
 * of it (without echo-message, tags or not, translate writes nothing); NULL for a chunk left
 * to the frames' loop or to Python (or on an error, which is then set). */
static PyObject *
made_room_line(PyObject *chunk, PyObject *made, const char *own, Py_ssize_t own_size, PyObject *taken,
               PyObject *tagged, PyObject *sources, PyObject *channels, int echoing, Py_ssize_t max_line, int tags,
               PyObject *is_account, int *skip)
{
    if (!PyBytes_CheckExact(chunk) || PyBytes_GET_SIZE(chunk) == 0
        || (unsigned char)PyBytes_AS_STRING(chunk)[0] != ROOM_MESSAGE)
        return NULL;
    PyObject *line = PyDict_GetItemWithError(made, chunk);
    if (line == NULL && !PyErr_Occurred())
        line = new_room_line(chunk, made, tagged, sources, channels, max_line);
    if (line == NULL || !PyBytes_Check(line))
        return NULL;
    if (PyBytes_GET_SIZE(line) >= own_size && memcmp(PyBytes_AS_STRING(line), own, own_size) == 0) {
        /* the reader's own message: nothing, or Python's (which knows how to echo it) */
        *skip = !echoing;
        return NULL;
    }
    if (taken == Py_None)
        return line;
    PyObject *so_tagged = PyDict_GetItemWithError(tagged, taken);
    PyObject *with_tags =
        so_tagged != NULL && PyDict_Check(so_tagged) ? PyDict_GetItemWithError(so_tagged, chunk) : NULL;
    if (with_tags != NULL || PyErr_Occurred())
        return with_tags != NULL && PyBytes_Check(with_tags) ? with_tags : NULL;
    return new_tagged_line(chunk, line, tagged, taken, tags, is_account);
}

/* The chunks' lines from *at on, as chunk_lines writes them (see there): *at is left at the
 * first chunk left to Python. A new bytes object, or NULL with an error set. */
static PyObject *
write_chunks(PyObject *chunks, Py_ssize_t *at, PyObject *made, PyObject *own_source, PyObject *taken,
             PyObject *tagged, PyObject *middle, PyObject *sources, PyObject *channels, Py_ssize_t max_line, int tags,
             PyObject *is_account, int echoing)
{
    if ((tags & TAG_ACCOUNT) && !PyCallable_Check(is_account)) {
        PyErr_SetString(PyExc_TypeError, "is_account must be callable for the account tag");
        return NULL;
    }
    Written out;
    written_start(&out);
    LastSender last;
    last_sender_start(&last);
    int failed = 0;
    /* (The list is read again at each step: is_account is Python, which could change it.) */
    for (; *at < PyList_GET_SIZE(chunks); (*at)++) {
        PyObject *chunk = PyList_GET_ITEM(chunks, *at);
        if (!PyBytes_CheckExact(chunk) || PyBytes_GET_SIZE(chunk) == 0)
            break;
        Py_INCREF(chunk);
        int skip = 0;
        PyObject *line = made_room_line(chunk, made, PyBytes_AS_STRING(own_source), PyBytes_GET_SIZE(own_source),
                                        taken, tagged, sources, channels, echoing, max_line, tags, is_account, &skip);
        int whole = 0;
        if (line != NULL) {
            whole = write_bytes(&out, PyBytes_AS_STRING(line), PyBytes_GET_SIZE(line)) < 0 ? -1 : 1;
        } else if (skip) {
            whole = 1;
        } else if (!PyErr_Occurred()) {
            /* A chunk of frames: all of it here, or none (Python then takes it from its start). */
            Py_ssize_t offset = 0, before = out.size;
            whole = write_frames(&out, (const unsigned char *)PyBytes_AS_STRING(chunk), &offset,
                                 PyBytes_GET_SIZE(chunk), PyBytes_AS_STRING(middle), PyBytes_GET_SIZE(middle), sources,
                                 max_line, tags, is_account, &last);
            if (whole == 0)
                out.size = before;
        } else {
            whole = -1;
        }
        Py_DECREF(chunk);
        if (whole <= 0) {
            failed = whole < 0;
            break;
        }
    }
    PyObject *result = failed ? NULL : PyBytes_FromStringAndSize(out.bytes, out.size);
    last_sender_release(&last);
    written_release(&out);
    return result;
}

/* chunk_lines(chunks, index, made, own_source, taken, tagged, middle, sources, channels,
 *             max_line, tags, is_account, echoing) -> (lines, index)
 *
 * The lines of the chunks from index on (as they were queued: a room's message, or a direct
 * message, each its own chunk, mostly), as far as each is a room's message whose line is
 * made (made[chunk], made here for the first member; for a reader taking tags,
 * tagged[taken][chunk], made here too), nothing for the reader's own that it takes nothing of,
 * or a chunk whose frames are all direct_lines' common case; and the index of the first chunk
 * left to Python (which takes that one whole). One call for a batch of chunks: a call per chunk cost
 * more than its lines. */
static PyObject *
chunk_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 13 || !PyList_Check(args[0]) || !PyDict_Check(args[2]) || !PyBytes_Check(args[3])
        || !PyDict_Check(args[5]) || !PyBytes_Check(args[6]) || !PyDict_Check(args[7]) || !PyDict_Check(args[8])) {
        PyErr_SetString(PyExc_TypeError, "chunk_lines(list, int, dict, bytes, taken, dict, bytes, dict, dict, int, "
                                         "int, is_account, echoing)");
        return NULL;
    }
    Py_ssize_t index = PyLong_AsSsize_t(args[1]), max_line = PyLong_AsSsize_t(args[9]);
    int tags = PyLong_AsLong(args[10]), echoing = PyObject_IsTrue(args[12]);
    if (PyErr_Occurred())
        return NULL;
    Py_ssize_t at = index < 0 ? 0 : index;
    PyObject *lines = write_chunks(args[0], &at, args[2], args[3], args[4], args[5], args[6], args[7], args[8],
                                   max_line, tags, args[11], echoing);
    return lines == NULL ? NULL : Py_BuildValue("(Nn)", lines, at);
}

/* What lines_for writes with, given once by known_lines: the made lines, the tagged ones, the
 * senders' and the rooms' words (translate's dicts), the longest line, and the names read of a
 * reader. */
static PyObject *known_made, *known_tagged, *known_sources, *known_channels, *name_writing, *name_is_account;
static Py_ssize_t known_max_line;

/* known_lines(made, tagged, sources, channels, max_line) */
static PyObject *
known_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyDict_Check(args[0]) || !PyDict_Check(args[1]) || !PyDict_Check(args[2])
        || !PyDict_Check(args[3]) || !PyLong_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "known_lines(dict, dict, dict, dict, int)");
        return NULL;
    }
    Py_ssize_t max_line = PyLong_AsSsize_t(args[4]);
    if (max_line < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "max_line must not be negative");
        return NULL;
    }
    if (name_writing == NULL) {
        name_writing = PyUnicode_InternFromString("writing");
        name_is_account = PyUnicode_InternFromString("is_account");
        if (name_writing == NULL || name_is_account == NULL)
            return NULL;
    }
    Py_XSETREF(known_made, Py_NewRef(args[0]));
    Py_XSETREF(known_tagged, Py_NewRef(args[1]));
    Py_XSETREF(known_sources, Py_NewRef(args[2]));
    Py_XSETREF(known_channels, Py_NewRef(args[3]));
    known_max_line = max_line;
    Py_RETURN_NONE;
}

/* lines_for(chunks, reader) -> bytes | None
 *
 * translate.to_irc(chunks, reader) in one call where chunk_lines takes every chunk, for a
 * reader that notes no read markers: what an outbox sends an IRC client, per member of a room
 * per round, without a Python frame. None where to_irc must translate (the lines made and
 * kept here are there for it to find), and for a reader not welcomed yet (writing None). */
static PyObject *
lines_for(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyList_Check(args[0]) || known_made == NULL) {
        PyErr_SetString(PyExc_TypeError, "lines_for(list, reader), once known_lines was given");
        return NULL;
    }
    PyObject *chunks = args[0], *reader = args[1];
    PyObject *writing = PyObject_GetAttr(reader, name_writing);
    if (writing == NULL)
        return NULL;
    PyObject *result = NULL, *is_account = NULL;
    if (writing == Py_None) { /* (before the welcome: to_irc holds what is not the port's own) */
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (!PyTuple_Check(writing) || PyTuple_GET_SIZE(writing) != 6 || !PyBytes_Check(PyTuple_GET_ITEM(writing, 0))
        || !PyBytes_Check(PyTuple_GET_ITEM(writing, 1)) || !PyLong_Check(PyTuple_GET_ITEM(writing, 3))) {
        PyErr_SetString(PyExc_TypeError, "a reader's writing: (to_reader, own_source, taken, tag_flags, marking, echoing)");
        goto done;
    }
    int marking = PyObject_IsTrue(PyTuple_GET_ITEM(writing, 4)), echoing = PyObject_IsTrue(PyTuple_GET_ITEM(writing, 5));
    long tags = PyLong_AsLong(PyTuple_GET_ITEM(writing, 3));
    if (marking < 0 || echoing < 0 || (tags == -1 && PyErr_Occurred()))
        goto done;
    if (marking) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    is_account = (tags & TAG_ACCOUNT) ? PyObject_GetAttr(reader, name_is_account) : Py_NewRef(Py_None);
    if (is_account == NULL)
        goto done;
    Py_ssize_t at = 0;
    PyObject *lines = write_chunks(chunks, &at, known_made, PyTuple_GET_ITEM(writing, 1), PyTuple_GET_ITEM(writing, 2),
                                   known_tagged, PyTuple_GET_ITEM(writing, 0), known_sources, known_channels,
                                   known_max_line, (int)tags, is_account, echoing);
    if (lines != NULL && at < PyList_GET_SIZE(chunks)) {
        Py_DECREF(lines);
        lines = Py_NewRef(Py_None);
    }
    result = lines;
done:
    Py_XDECREF(is_account);
    Py_DECREF(writing);
    return result;
}

static PyMethodDef methods[] = {
    {"chunk_lines", (PyCFunction)(void (*)(void))chunk_lines, METH_FASTCALL,
     "The lines of the common chunks from index on."},
    {"known_lines", (PyCFunction)(void (*)(void))known_lines, METH_FASTCALL, "What lines_for writes with."},
    {"lines_for", (PyCFunction)(void (*)(void))lines_for, METH_FASTCALL,
     "to_irc's lines, where every chunk is a common one (else None)."},
    {"read_messages", read_messages, METH_VARARGS, "The messages of the whole lines in data[:end]."},
    {"direct_lines", direct_lines, METH_VARARGS, "The lines of the common frames from offset on."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
