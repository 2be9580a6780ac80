/* A batch committed in C, with the interpreter's lock let go for all of SQLite's work.
 *
 * The writer thread of sqlite_worker commits each batch (writes, then many rows of a few
 * statements, then what follows those rows) in one transaction. Through Python's sqlite3 it
 * held the interpreter's lock to bind every value and took it back after every statement, so
 * the thread and the hub took turns: each wait for the lock was a wait for the other's next
 * system call, and under load neither ran at its speed. Here the values are read once (their
 * UTF-8, which each string keeps), the lock is let go, and SQLite does the rest on its own
 * connection to the same file. The same transaction as sqlite_worker's Python _commit, which
 * runs where this was not built, or where this module's SQLite is not the one Python's
 * sqlite3 uses (two copies of SQLite on one file in one process would undo each other's
 * locks).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sqlite3.h>
#ifdef __linux__ /* (Python.h asks for _GNU_SOURCE's declarations) */
#include <dlfcn.h>
#include <link.h>
#endif

enum { NOTHING, INTEGER, REAL, TEXT, BLOB };

/* One value to bind, read from its Python object (which outlives the commit). */
typedef struct {
    int kind;
    sqlite3_int64 integer;
    double real;
    const char *data;
    Py_ssize_t size;
} Value;

/* One statement of the batch and its rows (`rows` of `width` values): shapes[i] is the
 * statement for 2**i rows at once (INSERT ... VALUES (...), (...), ...), taken as large as the
 * rows left allow: one statement for many rows costs SQLite much less than one a row. */
typedef struct {
    const char **shapes;
    Py_ssize_t shape_count;
    Value *values;
    Py_ssize_t rows, width;
    const char **then; /* statements run after the rows, with their least and greatest first value */
    Py_ssize_t then_count;
    sqlite3_int64 least, greatest;
} Statement;

typedef struct {
    PyObject_HEAD
    sqlite3 *db;
    int busy; /* a commit is running without the lock: the connection is its alone */
} BatchWriter;

static PyObject *operational_error; /* sqlite3.OperationalError */

/* --- Reading the batch (with the lock) -------------------------------------------------- */

static int
read_value(PyObject *object, Value *value)
{
    if (object == Py_None) {
        value->kind = NOTHING;
    } else if (PyLong_Check(object)) {
        value->kind = INTEGER;
        value->integer = PyLong_AsLongLong(object);
        if (value->integer == -1 && PyErr_Occurred())
            return -1;
    } else if (PyFloat_Check(object)) {
        value->kind = REAL;
        value->real = PyFloat_AS_DOUBLE(object);
    } else if (PyUnicode_Check(object)) {
        value->kind = TEXT;
        value->data = PyUnicode_AsUTF8AndSize(object, &value->size); /* (kept by the string) */
        if (value->data == NULL)
            return -1;
    } else if (PyBytes_Check(object)) {
        value->kind = BLOB;
        value->data = PyBytes_AS_STRING(object);
        value->size = PyBytes_GET_SIZE(object);
    } else {
        PyErr_Format(PyExc_TypeError, "a value SQLite cannot take: %.100s", Py_TYPE(object)->tp_name);
        return -1;
    }
    return 0;
}

static const char *
read_sql(PyObject *sql)
{
    if (!PyUnicode_Check(sql)) {
        PyErr_SetString(PyExc_TypeError, "a statement is a str");
        return NULL;
    }
    return PyUnicode_AsUTF8(sql);
}

/* The texts of a tuple of statements, kept by its strings; NULL with an error set. */
static const char **
read_sqls(PyObject *sqls, Py_ssize_t *count)
{
    *count = PyTuple_GET_SIZE(sqls);
    const char **texts = PyMem_RawMalloc(sizeof(char *) * (size_t)(*count + 1));
    if (texts == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t k = 0; k < *count; k++) {
        if ((texts[k] = read_sql(PyTuple_GET_ITEM(sqls, k))) == NULL) {
            PyMem_RawFree(texts);
            return NULL;
        }
    }
    return texts;
}

/* statement's rows from `rows` (a tuple of tuples, one width): their values, and the least
 * and greatest first value where `then` (a tuple of statements) asks for them. */
static int
read_rows(Statement *statement, PyObject *rows, PyObject *then)
{
    statement->rows = PyTuple_GET_SIZE(rows);
    statement->width = 0;
    if (statement->rows > 0) {
        PyObject *first = PyTuple_GET_ITEM(rows, 0);
        if (!PyTuple_Check(first)) {
            PyErr_SetString(PyExc_TypeError, "a row is a tuple");
            return -1;
        }
        statement->width = PyTuple_GET_SIZE(first);
    }
    if (statement->width > 0 && statement->rows > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(Value) / statement->width) {
        PyErr_NoMemory();
        return -1;
    }
    statement->values = PyMem_RawMalloc(sizeof(Value) * (size_t)(statement->rows * statement->width + 1));
    if (statement->values == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < statement->rows; i++) {
        PyObject *row = PyTuple_GET_ITEM(rows, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != statement->width) {
            PyErr_SetString(PyExc_TypeError, "the rows of a statement are tuples of one width");
            return -1;
        }
        for (Py_ssize_t j = 0; j < statement->width; j++) {
            if (read_value(PyTuple_GET_ITEM(row, j), &statement->values[i * statement->width + j]) < 0)
                return -1;
        }
    }
    statement->then_count = then == NULL ? 0 : PyTuple_GET_SIZE(then);
    if (statement->then_count == 0)
        return 0;
    if (statement->rows == 0 || statement->width == 0) {
        statement->then_count = 0; /* (no rows: nothing follows them) */
        return 0;
    }
    if ((statement->then = read_sqls(then, &statement->then_count)) == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < statement->rows; i++) {
        Value *key = &statement->values[i * statement->width];
        if (key->kind != INTEGER) {
            PyErr_SetString(PyExc_TypeError, "rows followed by statements begin with an integer key");
            return -1;
        }
        if (i == 0 || key->integer < statement->least)
            statement->least = key->integer;
        if (i == 0 || key->integer > statement->greatest)
            statement->greatest = key->integer;
    }
    return 0;
}

/* The batch's statements, in the order _commit runs them: each write (sql, parameters), then
 * each statement of bulk (sql -> its rows, in the shapes shapes[sql] gives) with what then
 * says follows it. `kept` holds what the values point into. */
static Statement *
read_batch(PyObject *const *args, PyObject *kept, Py_ssize_t *count)
{
    PyObject *writes = args[0], *bulk = args[1], *shapes = args[2], *then = args[3];
    if (!PyList_Check(writes) || !PyDict_Check(bulk) || !PyDict_Check(shapes) || !PyDict_Check(then)) {
        PyErr_SetString(PyExc_TypeError, "commit(writes: list, bulk: dict, shapes: dict, then: dict, durable)");
        return NULL;
    }
    PyObject *all_writes = PyList_AsTuple(writes);
    if (all_writes == NULL || PyList_Append(kept, all_writes) < 0) {
        Py_XDECREF(all_writes);
        return NULL;
    }
    Py_DECREF(all_writes);
    Py_ssize_t total = PyTuple_GET_SIZE(all_writes) + PyDict_GET_SIZE(bulk);
    Statement *statements = PyMem_RawCalloc((size_t)total + 1, sizeof(Statement));
    if (statements == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    *count = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(all_writes); i++) {
        PyObject *write = PyTuple_GET_ITEM(all_writes, i);
        Statement *statement = &statements[(*count)++];
        if (!PyTuple_Check(write) || PyTuple_GET_SIZE(write) != 2 || !PyTuple_Check(PyTuple_GET_ITEM(write, 1))) {
            PyErr_SetString(PyExc_TypeError, "a write is (sql, a tuple of parameters)");
            return statements;
        }
        PyObject *row = PyTuple_Pack(1, PyTuple_GET_ITEM(write, 1));
        if (row == NULL || PyList_Append(kept, row) < 0) {
            Py_XDECREF(row);
            return statements;
        }
        Py_DECREF(row);
        PyObject *sql = PyTuple_GET_ITEM(write, 0);
        statement->shape_count = 1;
        if ((statement->shapes = PyMem_RawMalloc(sizeof(char *))) == NULL) {
            PyErr_NoMemory();
            return statements;
        }
        if ((statement->shapes[0] = read_sql(sql)) == NULL || read_rows(statement, row, NULL) < 0)
            return statements;
    }
    Py_ssize_t position = 0;
    PyObject *sql, *rows;
    while (PyDict_Next(bulk, &position, &sql, &rows)) {
        Statement *statement = &statements[(*count)++];
        PyObject *all_rows = PySequence_Tuple(rows);
        if (all_rows == NULL || PyList_Append(kept, all_rows) < 0) {
            Py_XDECREF(all_rows);
            return statements;
        }
        Py_DECREF(all_rows);
        PyObject *following = PyDict_GetItemWithError(then, sql);
        if (following == NULL && PyErr_Occurred())
            return statements;
        if (following != NULL && (!PyTuple_Check(following) || PyList_Append(kept, following) < 0)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "what follows a statement's rows is a tuple of statements");
            return statements;
        }
        PyObject *its_shapes = PyDict_GetItemWithError(shapes, sql);
        if (its_shapes == NULL || !PyTuple_Check(its_shapes) || PyTuple_GET_SIZE(its_shapes) == 0
            || PyList_Append(kept, its_shapes) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "each statement of bulk has its shapes: a tuple of statements");
            return statements;
        }
        if ((statement->shapes = read_sqls(its_shapes, &statement->shape_count)) == NULL
            || read_rows(statement, all_rows, following) < 0)
            return statements;
    }
    return statements;
}

static void
free_batch(Statement *statements, Py_ssize_t count)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        PyMem_RawFree(statements[i].shapes);
        PyMem_RawFree(statements[i].values);
        PyMem_RawFree(statements[i].then);
    }
    PyMem_RawFree(statements);
}

/* --- Writing it (without the lock) ----------------------------------------------------- */

static int
bind_value(sqlite3_stmt *prepared, int index, const Value *value)
{
    switch (value->kind) {
    case INTEGER:
        return sqlite3_bind_int64(prepared, index, value->integer);
    case REAL:
        return sqlite3_bind_double(prepared, index, value->real);
    case TEXT:
        return sqlite3_bind_text64(prepared, index, value->data, (sqlite3_uint64)value->size, SQLITE_STATIC,
                                   SQLITE_UTF8);
    case BLOB:
        return sqlite3_bind_blob64(prepared, index, value->data, (sqlite3_uint64)value->size, SQLITE_STATIC);
    default:
        return sqlite3_bind_null(prepared, index);
    }
}

/* Runs the prepared statement to its end. */
static int
run_to_end(sqlite3_stmt *prepared)
{
    int status;
    while ((status = sqlite3_step(prepared)) == SQLITE_ROW)
        ;
    return status == SQLITE_DONE ? SQLITE_OK : status;
}

/* The statement's rows, each chunk of them by the largest shape that fits what is left. */
static int
run_rows(sqlite3 *db, const Statement *statement)
{
    sqlite3_stmt *prepared[64] = {NULL};
    int status = SQLITE_OK;
    Py_ssize_t shapes = statement->shape_count < 64 ? statement->shape_count : 64, width = statement->width;
    for (Py_ssize_t done = 0; status == SQLITE_OK && done < statement->rows;) {
        Py_ssize_t shape = shapes - 1, rows;
        while (shape > 0 && ((Py_ssize_t)1 << shape) > statement->rows - done)
            shape--;
        rows = (Py_ssize_t)1 << shape;
        if (prepared[shape] == NULL) {
            status = sqlite3_prepare_v2(db, statement->shapes[shape], -1, &prepared[shape], NULL);
            if (status == SQLITE_OK && (prepared[shape] == NULL || sqlite3_bind_parameter_count(prepared[shape]) != rows * width))
                status = SQLITE_RANGE;
        }
        for (Py_ssize_t j = 0; status == SQLITE_OK && j < rows * width; j++)
            status = bind_value(prepared[shape], (int)j + 1, &statement->values[done * width + j]);
        if (status == SQLITE_OK)
            status = run_to_end(prepared[shape]);
        if (status == SQLITE_OK)
            status = sqlite3_reset(prepared[shape]);
        done += rows;
    }
    for (Py_ssize_t shape = 0; shape < shapes; shape++)
        sqlite3_finalize(prepared[shape]);
    return status;
}

static int
run_batch(sqlite3 *db, const Statement *statements, Py_ssize_t count, int durable)
{
    int status = sqlite3_exec(db, durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    if (status == SQLITE_OK)
        status = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    for (Py_ssize_t i = 0; status == SQLITE_OK && i < count; i++) {
        const Statement *statement = &statements[i];
        status = run_rows(db, statement);
        /* (What follows the rows: each statement once, with their least and greatest key.) */
        Value keys[2] = {{INTEGER, statement->least, 0, NULL, 0}, {INTEGER, statement->greatest, 0, NULL, 0}};
        for (Py_ssize_t k = 0; status == SQLITE_OK && k < statement->then_count; k++) {
            Statement following = {.shapes = statement->then + k, .shape_count = 1, .values = keys, .rows = 1, .width = 2};
            status = run_rows(db, &following);
        }
    }
    if (status == SQLITE_OK)
        status = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    return status;
}

/* --- The type ---------------------------------------------------------------------------- */

static int
batch_writer_init(BatchWriter *self, PyObject *args, PyObject *kwargs)
{
    PyObject *path;
    static char *keywords[] = {"path", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&:BatchWriter", keywords, PyUnicode_FSConverter, &path))
        return -1;
    if (self->db != NULL) {
        Py_DECREF(path);
        PyErr_SetString(PyExc_RuntimeError, "a BatchWriter opens once");
        return -1;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = sqlite3_open_v2(PyBytes_AS_STRING(path), &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (status == SQLITE_OK)
        status = sqlite3_busy_timeout(self->db, 5000); /* (as Python's sqlite3 waits for a lock) */
    /* A statement of many rows keeps the pages it changes in a statement journal, which SQLite
     * spills to a file of /var/tmp past 64 KB: for a batch of rooms' messages, a file made and
     * unlinked, and thousands of page writes to it a second. In memory it costs none of these
     * system calls and needs no writable temporary directory; a batch bounds its size. (The
     * migrations, which may rewrite a whole index, keep their temporary files: sqlite_worker.) */
    if (status == SQLITE_OK)
        status = sqlite3_exec(self->db, "PRAGMA temp_store=MEMORY", NULL, NULL, NULL);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (status != SQLITE_OK) {
        PyErr_SetString(operational_error, self->db == NULL ? sqlite3_errstr(status) : sqlite3_errmsg(self->db));
        sqlite3_close_v2(self->db);
        self->db = NULL;
        return -1;
    }
    return 0;
}

/* commit(writes, bulk, shapes, then, durable): sqlite_worker._commit's transaction (see
 * there): writes [(sql, parameters)], then bulk {sql: rows} (many at a time: shapes[sql][i]
 * is sql for 2**i rows), each followed by then.get(sql, ()) with its rows' least and
 * greatest first value; a full sync where durable. Rolled back, and
 * sqlite3.OperationalError, where SQLite failed; a TypeError, UnicodeEncodeError or
 * OverflowError, with nothing written, where a value cannot be bound. */
static PyObject *
batch_writer_commit(BatchWriter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "commit(writes, bulk, shapes, then, durable)");
        return NULL;
    }
    if (self->db == NULL || self->busy) {
        PyErr_SetString(operational_error, self->db == NULL ? "the batch writer is closed" : "the batch writer is busy");
        return NULL;
    }
    int durable = PyObject_IsTrue(args[4]);
    PyObject *kept = PyList_New(0);
    if (durable < 0 || kept == NULL) {
        Py_XDECREF(kept);
        return NULL;
    }
    Py_ssize_t count = 0;
    Statement *statements = read_batch(args, kept, &count);
    if (statements == NULL || PyErr_Occurred()) {
        if (statements != NULL)
            free_batch(statements, count);
        Py_DECREF(kept);
        return NULL;
    }
    int status;
    char *message = NULL;
    sqlite3 *db = self->db;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    status = run_batch(db, statements, count, durable);
    if (status != SQLITE_OK) {
        /* (A count of parameters that does not fit is this module's finding, not SQLite's.) */
        message = sqlite3_mprintf("%s", status == SQLITE_RANGE ? "wrong number of parameters" : sqlite3_errmsg(db));
        if (!sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    Py_END_ALLOW_THREADS
    self->busy = 0;
    free_batch(statements, count);
    Py_DECREF(kept);
    if (status != SQLITE_OK) {
        PyErr_SetString(operational_error, message != NULL ? message : sqlite3_errstr(status));
        sqlite3_free(message);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
batch_writer_close(BatchWriter *self, PyObject *unused)
{
    (void)unused;
    if (self->busy) {
        PyErr_SetString(operational_error, "the batch writer is busy");
        return NULL;
    }
    sqlite3 *db = self->db;
    self->db = NULL;
    if (db != NULL) {
        Py_BEGIN_ALLOW_THREADS
        sqlite3_close_v2(db);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static void
batch_writer_dealloc(BatchWriter *self)
{
    if (self->db != NULL)
        sqlite3_close_v2(self->db);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef batch_writer_methods[] = {
    {"commit", (PyCFunction)(void (*)(void))batch_writer_commit, METH_FASTCALL, "One batch, in one transaction."},
    {"close", (PyCFunction)batch_writer_close, METH_NOARGS, "Close the connection."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject batch_writer_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "chatroom.server.storage._batch_writer.BatchWriter",
    .tp_basicsize = sizeof(BatchWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "BatchWriter(path): a connection of its own to the database at path, for sqlite_worker's batches.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)batch_writer_init,
    .tp_dealloc = (destructor)batch_writer_dealloc,
    .tp_methods = batch_writer_methods,
};

/* --- One SQLite in the process ------------------------------------------------------------ */

#ifdef __linux__
static int another_sqlite;

static int
look_for_another_sqlite(struct dl_phdr_info *info, size_t size, void *unused)
{
    (void)size;
    (void)unused;
    if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0')
        return 0;
    void *object = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
    if (object == NULL)
        return 0;
    void *found = dlsym(object, "sqlite3_open_v2");
    if (found != NULL && found != (void *)sqlite3_open_v2)
        another_sqlite = 1;
    dlclose(object);
    return 0;
}
#endif

/* sqlite_in_common(python_sqlite_version) -> whether this module's SQLite is the one the
 * process's sqlite3 module uses: the same version, and (on Linux) no loaded library with
 * another copy of it. */
static PyObject *
sqlite_in_common(PyObject *module, PyObject *version)
{
    (void)module;
    if (!PyUnicode_Check(version)) {
        PyErr_SetString(PyExc_TypeError, "sqlite_in_common(sqlite3.sqlite_version)");
        return NULL;
    }
    if (PyUnicode_CompareWithASCIIString(version, sqlite3_libversion()) != 0)
        Py_RETURN_FALSE;
#ifdef __linux__
    another_sqlite = 0;
    dl_iterate_phdr(look_for_another_sqlite, NULL);
    if (another_sqlite)
        Py_RETURN_FALSE;
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE; /* (not checked elsewhere: the Python writes) */
#endif
}

static PyMethodDef methods[] = {
    {"sqlite_in_common", sqlite_in_common, METH_O, "Whether this module's SQLite is the sqlite3 module's."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_batch_writer", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__batch_writer(void)
{
    PyObject *sqlite3_module = PyImport_ImportModule("sqlite3");
    if (sqlite3_module == NULL)
        return NULL;
    operational_error = PyObject_GetAttrString(sqlite3_module, "OperationalError");
    Py_DECREF(sqlite3_module);
    if (operational_error == NULL || PyType_Ready(&batch_writer_type) < 0)
        return NULL;
    PyObject *made = PyModule_Create(&module);
    if (made == NULL)
        return NULL;
    if (PyModule_AddObjectRef(made, "BatchWriter", (PyObject *)&batch_writer_type) < 0) {
        Py_DECREF(made);
        return NULL;
    }
    return made;
}
