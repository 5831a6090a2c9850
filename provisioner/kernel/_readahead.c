/* Netlink dumps read on a thread of their own, for kernel/netlink.py's Opening.
 *
 * A fleet's plan works on one host after another; each begins with four dumps (links,
 * addresses, IPv4 and IPv6 routes), some 0.2 ms of the kernel's work for a host of 20 devices,
 * a third of the host's time, while the machine's other CPU waits. connection/kernel.py's
 * Ahead takes the next host's lock and asks for its socket and dumps here while this process
 * plans the host before it. The thread is plain C: it never takes the GIL, so it never waits
 * for the thread planning (a Python thread would, after every system call).
 *
 * One reader thread does every reading, in the order they were asked for: started with the
 * first, it waits for the next one after each and lives as long as the process (a thread made
 * for each reading cost the thread asking 15-40 us of a host's 0.5 ms). After a reading in
 * another namespace it goes back to the one this module was loaded in, so that it never keeps
 * a host's namespace alive. A process forked while it runs has no reader: the child's
 * readings under way or waiting then fail (ECANCELED), and its next one starts a reader of its
 * own.
 *
 * start(sock, requests[, most]) -> Reading: sends each request (a whole netlink message, a dump
 *   asked for) on a copy of `sock`'s descriptor (dup: the socket may be closed meanwhile), one
 *   after another, and reads each one's answer up to
 *   its end (a message of the request's sequence number that is NLMSG_DONE or NLMSG_ERROR), or up
 *   to a message whose header cannot be walked (netlink.py's walk of the answer then finds it
 *   without its end, and the dump is asked for again in turn).
 *   Answers of more than `most` bytes in all (256 MB) are not kept: E2BIG, as memory refused is
 *   ENOMEM. Then the answer under way is still read to its end (and dropped) and nothing more is
 *   asked, so the kernel is not left in the middle of a dump, which would refuse the next one
 *   asked for on the socket (EBUSY). A failed send or receive stops the reader at once, and so
 *   does a datagram larger than its 1 MB buffer (EMSGSIZE; the end it held is not seen).
 *   Nobody else may use the socket until result() has returned. (The reader as a test drives it,
 *   against a peer that sends anything; provision itself uses start_in.)
 * start_in(path, requests[, most]) -> Reading: the same, on a socket the thread makes itself in the
 *   network namespace whose file is `path` (/run/netns/NAME): it opens the file (without waiting:
 *   a FIFO put there must not hold the reader), enters the
 *   namespace (setns(2) moves only the calling thread), makes a
 *   NETLINK_ROUTE socket set up as netlink.py's Netlink makes one (buffers, strict checking,
 *   extended acks, a receive timeout, bound and connected to the kernel), then reads. So the
 *   thread planning does none of it: entering the namespace and back, the socket and its
 *   settings were 40-50 us of the 130 us a fleet's next host cost that thread (docs/performance.md).
 *   The socket is the Reading's until opened() hands it over; one never handed over is closed
 *   with the Reading.
 * Reading.opened() -> (fd, namespace): start_in's socket, and the inode of the namespace it was
 *   made in (as os.stat of /proc/thread-self/ns/net names it: two namespaces alive at once never
 *   share one). Waits for the reader; OSError with the errno of the first failure; from then on
 *   the descriptor is the caller's (a second call: ValueError).
 * Reading.result() -> one tuple per request of the datagrams read for it, as bytes; OSError with
 *   the errno of the first failure (what was read is then dropped). Waits for the reader with the
 *   GIL released, a signal's handler run every 0.1 s meanwhile (Ctrl-C: KeyboardInterrupt); the
 *   second call gives the same answer.
 * Reading.wait() -> None: waits for the reader, as result() does, without making anything of what
 *   it read, and closes a socket it made that was never handed over.
 * A Reading that goes away waits for the reader to be done with it first (without a signal's
 *   handler: a reading ends within the socket's receive timeout), then closes what it holds.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HEADER 16              /* struct nlmsghdr */
#define NLMSG_ERROR_TYPE 2
#define NLMSG_DONE_TYPE 3
#define DATAGRAM (1 << 20)     /* what netlink.py's dump receives at most at once */
#define MOST (256u << 20)      /* what is kept of the answers at most, unless asked otherwise (10 000 links: 12 MB) */
#define STACK (64 << 10)
/* start_in's socket, as netlink.py's Netlink._setup sets one up (tests/integration/test_read_ahead.py
 * compares the two, option by option) */
#define SEND_BUFFER (1 << 20)
#define RECEIVE_BUFFER (8 << 20)
#define RECEIVE_TIMEOUT 10     /* seconds: netlink.py's RECEIVE_TIMEOUT says why */
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

typedef struct Reading {
    PyObject_HEAD
    struct Reading *next; /* the one queued after it */
    int done;  /* the reader is done with it (under `lock`) */
    int fd;           /* start's copy of its socket's descriptor, or the socket start_in's reader made */
    char *path;       /* start_in: the namespace's file, for the reader to enter */
    int owned;        /* fd is the Reading's to close: start's copy, or a socket not handed over by opened() */
    unsigned long long namespace;  /* the inode of the namespace it was made in */
    Py_ssize_t count;
    char *requests;   /* the requests, one after another */
    size_t *request;  /* count + 1 offsets into requests */
    /* what the thread read: every datagram, one after another, and where each begins */
    char *data;
    size_t size, capacity;
    size_t *datagram; /* ndatagrams + 1 offsets into data */
    size_t ndatagrams, datagram_capacity;
    size_t *first; /* count + 1: each request's first datagram */
    size_t most;
    int error;
    PyObject *answer;
} Reading;

static uint32_t u32_at(const char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint16_t u16_at(const char *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* Whether this datagram ends the answer to `seq`: its end or error message, or a header that
 * cannot be walked (nothing more would come that the reader could use). */
static int ends(const char *p, size_t n, uint32_t seq) {
    size_t offset = 0;
    while (offset + HEADER <= n) {
        uint32_t length = u32_at(p + offset);
        uint16_t type = u16_at(p + offset + 4);
        if (length < HEADER || length > n - offset)
            return 1;
        if (u32_at(p + offset + 8) == seq && (type == NLMSG_DONE_TYPE || type == NLMSG_ERROR_TYPE))
            return 1;
        offset += ((size_t)length + 3) & ~(size_t)3;
    }
    return 0;
}

static int keep(Reading *r, const char *p, size_t n) {
    if (n > r->most - r->size)
        return E2BIG;
    if (r->size + n > r->capacity) {
        size_t capacity = r->capacity ? r->capacity : 64 << 10;
        while (capacity < r->size + n)
            capacity *= 2;
        char *data = realloc(r->data, capacity);
        if (data == NULL)
            return ENOMEM;
        r->data = data;
        r->capacity = capacity;
    }
    if (r->ndatagrams + 2 > r->datagram_capacity) {
        size_t capacity = r->datagram_capacity ? r->datagram_capacity * 2 : 64;
        size_t *datagram = realloc(r->datagram, capacity * sizeof *datagram);
        if (datagram == NULL)
            return ENOMEM;
        r->datagram = datagram;
        r->datagram_capacity = capacity;
    }
    if (n)  /* an empty datagram, the first: no buffer yet, and memcpy is not given NULL */
        memcpy(r->data + r->size, p, n);
    r->datagram[r->ndatagrams++] = r->size;
    r->size += n;
    r->datagram[r->ndatagrams] = r->size;
    return 0;
}

/* The socket start_in asked for, in the namespace at r->path: 0, or the errno of what failed. */
static int make_socket(Reading *r) {
    int ns = open(r->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);  /* namespace.py's OPEN_FLAGS */
    if (ns < 0)
        return errno;
    struct stat st;
    if (fstat(ns, &st) < 0 || setns(ns, CLONE_NEWNET) < 0) {
        int error = errno;
        close(ns);
        return error;
    }
    close(ns);
    r->namespace = (unsigned long long)st.st_ino;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return errno;
    r->fd = fd;
    r->owned = 1;
    static const int buffers[][3] = {{SO_SNDBUFFORCE, SO_SNDBUF, SEND_BUFFER},
                                     {SO_RCVBUFFORCE, SO_RCVBUF, RECEIVE_BUFFER}};
    for (size_t i = 0; i < sizeof buffers / sizeof *buffers; i++) {
        /* the forced size needs CAP_NET_ADMIN; without, the capped one still does for reading */
        if (setsockopt(fd, SOL_SOCKET, buffers[i][0], &buffers[i][2], sizeof(int)) < 0 &&
            (errno != EPERM || setsockopt(fd, SOL_SOCKET, buffers[i][1], &buffers[i][2], sizeof(int)) < 0))
            return errno;
    }
    static const int flags[] = {NETLINK_EXT_ACK, NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK};
    const int one = 1;
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
        (void)setsockopt(fd, SOL_NETLINK, flags[i], &one, sizeof one);  /* an older kernel: done without */
    const struct timeval timeout = {RECEIVE_TIMEOUT, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) < 0)
        return errno;
    /* connected to the kernel: a datagram from any other socket is refused */
    struct sockaddr_nl kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.nl_family = AF_NETLINK;
    if (bind(fd, (struct sockaddr *)&kernel, sizeof kernel) < 0 ||
        connect(fd, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        return errno;
    return 0;
}

/* Everything a reading asks for, read with `buffer` (DATAGRAM bytes; NULL: none could be had). */
static void read_all(Reading *r, char *buffer) {
    if (r->path != NULL) {
        r->error = make_socket(r);
        if (r->error) {
            for (Py_ssize_t i = 0; i <= r->count; i++)
                r->first[i] = 0;
            return;
        }
    }
    if (buffer == NULL)
        r->error = ENOMEM;
    for (Py_ssize_t i = 0; i < r->count && !r->error; i++) {  /* after a failure, nothing more asked */
        r->first[i] = r->ndatagrams;
        const char *request = r->requests + r->request[i];
        size_t length = r->request[i + 1] - r->request[i];
        uint32_t seq = u32_at(request + 8);
        ssize_t n;
        do
            n = send(r->fd, request, length, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            r->error = errno;
            break;
        }
        for (;;) {
            do
                n = recv(r->fd, buffer, DATAGRAM, MSG_TRUNC);
            while (n < 0 && errno == EINTR);
            if (n < 0) {
                r->error = errno;
                break;
            }
            if (!r->error) {  /* after a failure, only read on to this answer's end */
                int error = (size_t)n > DATAGRAM ? EMSGSIZE : keep(r, buffer, (size_t)n);
                if (error)
                    r->error = error;
            }
            /* an empty datagram (the peer gone), or one cut short (its end unseen): nothing more to wait for */
            if (n == 0 || (size_t)n > DATAGRAM || ends(buffer, (size_t)n, seq))
                break;
        }
    }
    r->first[r->count] = r->ndatagrams;  /* (after a failure the rest is not read: result() raises) */
}

/* The reader thread and its queue. `lock` guards all of them, and each Reading's `done`. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queued = PTHREAD_COND_INITIALIZER;    /* a reading to do */
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER;  /* a reading done */
static Reading *head, *tail;  /* queued, not begun */
static Reading *current;      /* the one under way */
static int started;           /* the reader thread runs (in this process) */
static int home = -1;         /* the namespace the module was loaded in: where the reader waits */

static void *reader(void *unused) {
    (void)unused;
    char *buffer = malloc(DATAGRAM);
    pthread_mutex_lock(&lock);
    for (;;) {
        while (head == NULL)
            pthread_cond_wait(&queued, &lock);
        Reading *r = head;
        head = r->next;
        if (head == NULL)
            tail = NULL;
        current = r;
        pthread_mutex_unlock(&lock);
        read_all(r, buffer);
        if (r->path != NULL && home >= 0)
            (void)setns(home, CLONE_NEWNET);  /* else it stays there until the next: only keeping it alive */
        pthread_mutex_lock(&lock);
        current = NULL;
        r->done = 1;
        pthread_cond_broadcast(&finished);
    }
    return NULL;
}

/* `r` queued for the reader, started if it is not yet: 0, or the errno of pthread_create. */
static int submit(Reading *r) {
    int error = 0;
    pthread_mutex_lock(&lock);
    if (!started) {
        /* it takes no signal: they are this process's main thread's to handle */
        sigset_t all, old;
        pthread_attr_t attr;
        pthread_t thread;
        sigfillset(&all);
        pthread_attr_init(&attr);
        long least = sysconf(_SC_THREAD_STACK_MIN);
        pthread_attr_setstacksize(&attr, least > STACK ? (size_t)least : STACK);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        error = pthread_create(&thread, &attr, reader, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        started = !error;
    }
    if (!error) {
        r->next = NULL;
        if (tail != NULL)
            tail->next = r;
        else
            head = r;
        tail = r;
        pthread_cond_signal(&queued);
    }
    pthread_mutex_unlock(&lock);
    return error;
}

/* Around a fork: the lock is taken first, so the child never has the queue half-changed (the reader
 * holds it only between two steps, never while it waits for anything). In the child no reader
 * runs: what it was doing or had queued is canceled. The one under way may have been half-way
 * through growing its buffers: they are left to the child's exit, not freed. */
static void forking(void) { pthread_mutex_lock(&lock); }
static void forked_parent(void) { pthread_mutex_unlock(&lock); }
static void forked(void) {
    pthread_mutex_unlock(&lock);
    pthread_cond_init(&queued, NULL);
    pthread_cond_init(&finished, NULL);
    if (current != NULL) {
        current->data = NULL;
        current->datagram = NULL;
        current->next = head;
        head = current;
    }
    for (Reading *r = head; r != NULL; r = r->next) {
        if (!r->error)
            r->error = ECANCELED;
        r->done = 1;
    }
    head = tail = current = NULL;
    started = 0;
}

/* Waits until the reader is done with `r`, the GIL released; with `signals`, a signal's handler is
 * run every 0.1 s meanwhile, and -1 is an exception it raised (the reading goes on). */
static int join(Reading *r, int signals) {
    pthread_mutex_lock(&lock);  /* never held by the reader for long, nor while it waits for the GIL */
    int done = r->done;
    pthread_mutex_unlock(&lock);
    while (!done) {
        Py_BEGIN_ALLOW_THREADS
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000 * 1000;
        if (until.tv_nsec >= 1000 * 1000 * 1000) {
            until.tv_sec += 1;
            until.tv_nsec -= 1000 * 1000 * 1000;
        }
        pthread_mutex_lock(&lock);
        while (!r->done && pthread_cond_timedwait(&finished, &lock, &until) == 0) {
        }
        done = r->done;
        pthread_mutex_unlock(&lock);
        Py_END_ALLOW_THREADS
        if (!done && signals && PyErr_CheckSignals() < 0)
            return -1;
    }
    return 0;
}

static PyObject *result(PyObject *self, PyObject *unused) {
    (void)unused;
    Reading *r = (Reading *)self;
    if (join(r, 1) < 0)
        return NULL;
    if (r->error) {
        errno = r->error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (r->answer == NULL) {
        PyObject *answer = PyTuple_New(r->count);
        if (answer == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < r->count; i++) {
            size_t from = r->first[i], to = r->first[i + 1];
            PyObject *datagrams = PyTuple_New((Py_ssize_t)(to - from));
            if (datagrams == NULL) {
                Py_DECREF(answer);
                return NULL;
            }
            PyTuple_SET_ITEM(answer, i, datagrams);
            for (size_t d = from; d < to; d++) {
                PyObject *bytes = PyBytes_FromStringAndSize(r->data ? r->data + r->datagram[d] : "",  /* all empty: no buffer */
                                                            (Py_ssize_t)(r->datagram[d + 1] - r->datagram[d]));
                if (bytes == NULL) {
                    Py_DECREF(answer);
                    return NULL;
                }
                PyTuple_SET_ITEM(datagrams, (Py_ssize_t)(d - from), bytes);
            }
        }
        r->answer = answer;
    }
    Py_INCREF(r->answer);
    return r->answer;
}

static PyObject *opened(PyObject *self, PyObject *unused) {
    (void)unused;
    Reading *r = (Reading *)self;
    if (join(r, 1) < 0)
        return NULL;
    if (r->path == NULL) {
        PyErr_SetString(PyExc_ValueError, "a reading on a socket it was given: nothing opened");
        return NULL;
    }
    if (r->error) {
        errno = r->error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (!r->owned) {
        PyErr_SetString(PyExc_ValueError, "the socket was handed over already");
        return NULL;
    }
    PyObject *answer = Py_BuildValue("(iK)", r->fd, r->namespace);
    if (answer != NULL)
        r->owned = 0;
    return answer;
}

static PyObject *wait_for(PyObject *self, PyObject *unused) {
    (void)unused;
    Reading *r = (Reading *)self;
    if (join(r, 1) < 0)
        return NULL;
    if (r->owned) {
        close(r->fd);
        r->owned = 0;
    }
    Py_RETURN_NONE;
}

static void dealloc(PyObject *self) {
    Reading *r = (Reading *)self;
    join(r, 0);
    if (r->owned)
        close(r->fd);
    free(r->path);
    free(r->requests);
    free(r->request);
    free(r->data);
    free(r->datagram);
    free(r->first);
    Py_XDECREF(r->answer);
    Py_TYPE(self)->tp_free(self);
}

static PyMethodDef reading_methods[] = {
    {"result", result, METH_NOARGS, "result() -> one tuple of datagrams per request; OSError if reading failed"},
    {"wait", wait_for, METH_NOARGS, "wait(): the reader done with it, a socket never handed over closed"},
    {"opened", opened, METH_NOARGS, "opened() -> (fd, namespace inode): start_in's socket, handed over"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReadingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "provisioner.kernel._readahead.Reading",
    .tp_basicsize = sizeof(Reading),
    .tp_dealloc = dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = reading_methods,
};

/* The Reading of `given` requests on `fd` (start's copy, which it then owns, or -1: a closed
 * socket, whose reading fails) or on a socket made in the namespace at `path` (start_in), queued. */
static PyObject *begin(int fd, const char *path, PyObject *given, unsigned long long most) {
    Py_ssize_t count = PyTuple_GET_SIZE(given);
    size_t total = 0;
    Reading *r = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(given, i);
        if (!PyBytes_Check(item) || PyBytes_GET_SIZE(item) < HEADER) {
            PyErr_SetString(PyExc_ValueError, "each request is a whole netlink message, as bytes");
            goto refused;
        }
        total += (size_t)PyBytes_GET_SIZE(item);
    }
    r = PyObject_New(Reading, &ReadingType);
    if (r == NULL)
        goto refused;
    r->next = NULL;
    r->done = 1;  /* until it is queued: a Reading that fails before goes away at once */
    r->fd = fd;
    r->owned = fd >= 0;  /* start's copy */
    r->namespace = 0;
    r->path = NULL;
    r->count = count;
    r->data = NULL;
    r->size = r->capacity = r->ndatagrams = r->datagram_capacity = 0;
    r->datagram = NULL;
    r->most = (size_t)most;
    r->error = 0;
    r->answer = NULL;
    r->requests = malloc(total ? total : 1);
    r->request = malloc((size_t)(count + 1) * sizeof *r->request);
    r->first = malloc((size_t)(count + 1) * sizeof *r->first);
    if (path != NULL)
        r->path = strdup(path);
    if (r->requests == NULL || r->request == NULL || r->first == NULL || (path != NULL && r->path == NULL)) {
        Py_DECREF(r);
        return PyErr_NoMemory();
    }
    size_t offset = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(given, i);
        r->request[i] = offset;
        memcpy(r->requests + offset, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item));
        offset += (size_t)PyBytes_GET_SIZE(item);
    }
    r->request[count] = offset;
    r->done = 0;
    int error = submit(r);
    if (error) {
        r->done = 1;
        Py_DECREF(r);
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return (PyObject *)r;
refused:  /* no Reading to own the copy */
    if (fd >= 0)
        close(fd);
    return NULL;
}

static PyObject *start(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *sock, *given;
    unsigned long long most = MOST;
    if (!PyArg_ParseTuple(args, "OO!|K:start", &sock, &PyTuple_Type, &given, &most))
        return NULL;
    int fd = PyObject_AsFileDescriptor(sock);
    if (fd < 0) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError))  /* a closed socket: -1, its reading fails (EBADF) */
            return NULL;
        PyErr_Clear();
    } else if ((fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return begin(fd, NULL, given, most);
}

static PyObject *start_in(PyObject *module, PyObject *args) {
    (void)module;
    const char *path;
    Py_ssize_t length;
    PyObject *given;
    unsigned long long most = MOST;
    if (!PyArg_ParseTuple(args, "s#O!|K:start_in", &path, &length, &PyTuple_Type, &given, &most))
        return NULL;
    if ((size_t)length != strlen(path)) {
        PyErr_SetString(PyExc_ValueError, "a path with a NUL in it");
        return NULL;
    }
    return begin(-1, path, given, most);
}

static PyMethodDef methods[] = {
    {"start", start, METH_VARARGS, "start(sock, requests) -> Reading: the dumps asked for, read on a thread of their own"},
    {"start_in", start_in, METH_VARARGS,
     "start_in(path, requests) -> Reading: the same, on a socket the thread makes in the namespace at path"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_readahead", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__readahead(void) {
    if (PyType_Ready(&ReadingType) < 0)
        return NULL;
    static int loaded;
    if (!loaded) {  /* once a process (a second interpreter loads it again) */
        if (pthread_atfork(forking, forked_parent, forked) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
            return NULL;
        }
        home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);  /* none: the reader stays where it read */
        loaded = 1;
    }
    return PyModule_Create(&module);
}
