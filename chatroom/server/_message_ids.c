/* Ids of direct messages taken in C: message_ids.next_id, which every message to a client of
 * version 3 or 4 (an IRC client's among them) takes, cost as much in Python as the rest of the
 * rules' work for it. The same layout and the same rules as message_ids.py, which runs alone
 * without a compiler and says what an id is.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>

#define SEQUENCE_BITS 8
#define NODE_BITS 12

static long long last_id = 0; /* the last id taken */
static long long node_tag = 0;

/* A new id for a message received at now_ms, and the time in ms it stands for (now_ms, or
 * later where ids were taken for a later time already). (Also for _relay.c, through the capsule
 * take_id_at: a relayed message's id without a tuple and two ints made and read back; it reads
 * the clock once for all the messages of one read.) */
static void
take_id_at(long long now_ms, long long *message_id, long long *time_ms)
{
    long long candidate = (now_ms << (SEQUENCE_BITS + NODE_BITS)) | node_tag;
    if (candidate <= last_id)
        candidate = last_id + (1LL << NODE_BITS);
    last_id = candidate;
    *message_id = candidate;
    *time_ms = candidate >> (SEQUENCE_BITS + NODE_BITS);
}

/* next_id() -> (a new id, the time in ms it stands for) */
static PyObject *
next_id(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    long long message_id, time_ms;
    take_id_at((long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, &message_id, &time_ms);
    return Py_BuildValue("(LL)", message_id, time_ms);
}

/* use_node_tag(tag): the ids taken from now on carry tag (0 <= tag < 2**NODE_BITS). */
static PyObject *
use_node_tag(PyObject *module, PyObject *arg)
{
    (void)module;
    long long tag = PyLong_AsLongLong(arg);
    if (tag == -1 && PyErr_Occurred())
        return NULL;
    if (tag < 0 || tag >= (1LL << NODE_BITS)) {
        PyErr_SetString(PyExc_ValueError, "a node tag is 0 to 4095");
        return NULL;
    }
    node_tag = tag;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"next_id", next_id, METH_NOARGS, "(a new id, the time in ms it stands for)"},
    {"use_node_tag", use_node_tag, METH_O, "The ids taken from now on carry this node's tag."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_message_ids", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__message_ids(void)
{
    static void (*const take_id_function)(long long, long long *, long long *) = take_id_at;
    PyObject *made = PyModule_Create(&module);
    PyObject *capsule = made == NULL ? NULL : PyCapsule_New((void *)&take_id_function, "chatroom.take_id_at", NULL);
    if (capsule == NULL || PyModule_AddObject(made, "take_id_at", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_XDECREF(made);
        return NULL;
    }
    return made;
}
