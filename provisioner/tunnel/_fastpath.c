/* The per-packet path of a WireGuard tunnel in C: transport messages sealed and opened with
 * ChaCha20-Poly1305 from OpenSSL's libcrypto, the receive side's replay window, and a batched
 * device read that seals as it reads. provisioner/tunnel/fastpath.py is the only importer; it
 * holds the Python model of every function here and picks one of the two.
 *
 * Everything handed in is hostile: a message is parsed only at fixed offsets (the counter at
 * 8..16), every length is checked against the buffer it is in before a byte is touched, no size
 * field is trusted, every buffer taken is released on every path, and every failure is a Python
 * exception (never an abort). Two threads may share a Session (the TCP carrier seals in one and
 * opens in the other): each direction has its own context and its own lock.
 *
 *   transport message = 4 (u32 LE) | receiver index (u32 LE) | counter (u64 LE)
 *                       | ChaCha20-Poly1305(key, nonce = 0^4 || counter LE, payload, no AAD) | tag (16)
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include <openssl/evp.h>

#define HEADER_LEN 16
#define TAG_LEN 16
#define KEY_LEN 32
#define MSG_TRANSPORT 4
#define FORGED (-1)
#define REPLAYED (-2)
#define MAX_PAYLOAD (1 << 24) /* far above any unit (64 KB and headers): keeps every sum in an int */

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

/* ------------------------------------------------------------------ the replay window
 * replay.py's rule exactly (RFC 6479, wireguard-go's replay.go): a ring of 128 64-bit blocks. */

#define BLOCK_BITS_LOG 6
#define BLOCK_BITS (1 << BLOCK_BITS_LOG)
#define RING_BLOCKS 128
#define BLOCK_MASK (RING_BLOCKS - 1)
#define BIT_MASK (BLOCK_BITS - 1)
#define WINDOW_SIZE ((RING_BLOCKS - 1) * BLOCK_BITS)
#define REJECT_AFTER_MESSAGES (UINT64_MAX - (UINT64_C(1) << 13)) /* 2**64 - 2**13 - 1 */

typedef struct {
    uint64_t last;
    uint64_t limit;
    uint64_t ring[RING_BLOCKS];
} window_t;

static void window_init(window_t *w, uint64_t limit) {
    memset(w, 0, sizeof(*w));
    w->limit = limit;
}

static int window_check(const window_t *w, uint64_t counter) {
    if (counter >= w->limit)
        return 0;
    if (counter > w->last)
        return 1;
    if (w->last - counter > WINDOW_SIZE)
        return 0;
    return !((w->ring[(counter >> BLOCK_BITS_LOG) & BLOCK_MASK] >> (counter & BIT_MASK)) & 1);
}

static int window_accept(window_t *w, uint64_t counter) {
    if (counter >= w->limit)
        return 0;
    uint64_t block = counter >> BLOCK_BITS_LOG;
    if (counter > w->last) {
        uint64_t current = w->last >> BLOCK_BITS_LOG;
        uint64_t diff = block - current;
        if (diff > RING_BLOCKS)
            diff = RING_BLOCKS;
        for (uint64_t i = current + 1; i <= current + diff; i++)
            w->ring[i & BLOCK_MASK] = 0;
        w->last = counter;
    } else if (w->last - counter > WINDOW_SIZE) {
        return 0;
    }
    uint64_t *slot = &w->ring[block & BLOCK_MASK];
    uint64_t bit = UINT64_C(1) << (counter & BIT_MASK);
    if (*slot & bit)
        return 0;
    *slot |= bit;
    return 1;
}

/* A Python int as a counter: 1 and *out set; 0 for one outside u64 (never accepted); -1 on error. */
static int counter_arg(PyObject *obj, uint64_t *out) {
    if (!PyLong_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "a counter is an int");
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear(); /* negative or past 2**64 */
        return 0;
    }
    *out = (uint64_t)v;
    return 1;
}

typedef struct {
    PyObject_HEAD
    window_t w;
} ReplayObject;

static int Replay_init(ReplayObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"limit", NULL};
    PyObject *limit = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O!", kwlist, &PyLong_Type, &limit))
        return -1;
    uint64_t lim = REJECT_AFTER_MESSAGES;
    if (limit != NULL) {
        int ok = counter_arg(limit, &lim);
        if (ok < 0)
            return -1;
        if (ok == 0) {
            PyErr_SetString(PyExc_ValueError, "limit must be in [0, 2**64)");
            return -1;
        }
    }
    window_init(&self->w, lim);
    return 0;
}

static PyObject *Replay_check(ReplayObject *self, PyObject *arg) {
    uint64_t c;
    int ok = counter_arg(arg, &c);
    if (ok < 0)
        return NULL;
    return PyBool_FromLong(ok && window_check(&self->w, c));
}

static PyObject *Replay_accept(ReplayObject *self, PyObject *arg) {
    uint64_t c;
    int ok = counter_arg(arg, &c);
    if (ok < 0)
        return NULL;
    return PyBool_FromLong(ok && window_accept(&self->w, c));
}

static PyMethodDef Replay_methods[] = {
    {"check", (PyCFunction)Replay_check, METH_O, "True if the counter would be accepted now."},
    {"accept", (PyCFunction)Replay_accept, METH_O, "Marks the counter as received; False if seen or too old."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReplayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "provisioner.tunnel._fastpath.ReplayWindow",
    .tp_basicsize = sizeof(ReplayObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "replay.ReplayWindow in C (the window a Session keeps for its receive key).",
    .tp_methods = Replay_methods,
    .tp_init = (initproc)Replay_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ buffers */

static int get_in(PyObject *obj, Py_buffer *view, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view->len > MAX_PAYLOAD + HEADER_LEN + TAG_LEN) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s is too long", what);
        return -1;
    }
    return 0;
}

static int get_out(PyObject *obj, Py_buffer *view) {
    return PyObject_GetBuffer(obj, view, PyBUF_WRITABLE);
}

/* Two regions overlap other than exactly (the cipher may work in place, not shifted). */
static int shifted_overlap(const uint8_t *a, Py_ssize_t alen, const uint8_t *b, Py_ssize_t blen) {
    if (a == b || alen == 0 || blen == 0)
        return 0;
    return a < b + blen && b < a + alen;
}

static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}



/* ------------------------------------------------------------------ TSO super-packets
 * vnet.wire_packets in C: a read from a tun with vnet_hdr and offloads (10-byte virtio header,
 * then an IP packet of up to 64 KB) cut into fully checksummed IP packets, as WireGuard's wire
 * wants them. Only fixed offsets are read, each after the length that covers it is checked. */

#define VNET_LEN 10
#define F_NEEDS_CSUM 1
#define F_DATA_VALID 2
#define GSO_NONE 0
#define GSO_TCPV4 1
#define GSO_TCPV6 4
#define GSO_ECN 0x80
#define TCP_FIN 1
#define TCP_PSH 8
#define TCP_CWR 128

typedef struct {
    const uint8_t *pkt; /* the IP packet, after the virtio header */
    Py_ssize_t n;       /* its length */
    int gso, v4, finish;
    Py_ssize_t l4, hl, seg, count, cstart, coff;
    uint16_t id;
    uint32_t seq;
    uint8_t flags;
} cut_t;

static uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void put_be16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint64_t ones_sum(const uint8_t *p, Py_ssize_t n, uint64_t total) {
    Py_ssize_t i = 0;
    for (; i + 1 < n; i += 2)
        total += (uint64_t)(p[i] << 8 | p[i + 1]);
    if (i < n)
        total += (uint64_t)p[i] << 8;
    return total;
}

static uint16_t fold(uint64_t total) {
    while (total >> 16)
        total = (total & 0xFFFF) + (total >> 16);
    return (uint16_t)total;
}

/* 0 and c planned; -1 with the reason in *why (the unit is not sent). */
static int cut_plan(cut_t *c, const uint8_t *unit, Py_ssize_t len, Py_ssize_t max_packet, const char **why) {
    memset(c, 0, sizeof(*c));
    if (len < VNET_LEN) {
        *why = "shorter than a virtio header";
        return -1;
    }
    /* flags u8, gso_type u8, hdr_len u16 (never trusted), gso_size u16, csum_start u16, csum_offset u16 */
    uint8_t flags = unit[0], gso_type = unit[1];
    Py_ssize_t gso_size = unit[4] | unit[5] << 8;
    Py_ssize_t cstart = unit[6] | unit[7] << 8, coff = unit[8] | unit[9] << 8;
    const uint8_t *p = unit + VNET_LEN;
    Py_ssize_t n = len - VNET_LEN;
    c->pkt = p;
    c->n = n;
    if (flags & ~(F_NEEDS_CSUM | F_DATA_VALID)) {
        *why = "virtio header flags";
        return -1;
    }
    if (gso_type == GSO_NONE) {
        c->count = n > 0 ? 1 : 0;
        if (flags & F_NEEDS_CSUM) {
            if (cstart + coff + 2 > n) {
                *why = "checksum offsets point outside the packet";
                return -1;
            }
            c->finish = 1;
            c->cstart = cstart;
            c->coff = coff;
        }
        return 0;
    }
    int base = gso_type & ~GSO_ECN;
    if ((base != GSO_TCPV4 && base != GSO_TCPV6) || !(flags & F_NEEDS_CSUM)) {
        *why = "gso_type not allowed";
        return -1;
    }
    if (n < 20) {
        *why = "packet shorter than an IP header";
        return -1;
    }
    int version = p[0] >> 4;
    Py_ssize_t l4;
    if (version == 4) {
        Py_ssize_t ihl = (p[0] & 0x0F) * 4;
        if (ihl < 20 || p[9] != 6) {
            *why = "offloaded IPv4 packet that is not TCP";
            return -1;
        }
        if (get_be16(p + 2) != n) {
            *why = "IPv4 total length does not match the packet";
            return -1;
        }
        l4 = ihl;
    } else if (version == 6) {
        if (n < 40 || p[6] != 6) {
            *why = "offloaded IPv6 packet that is not TCP";
            return -1;
        }
        if (get_be16(p + 4) != n - 40) {
            *why = "IPv6 payload length does not match the packet";
            return -1;
        }
        l4 = 40;
    } else {
        *why = "IP version";
        return -1;
    }
    if ((base == GSO_TCPV4) != (version == 4)) {
        *why = "gso_type does not match the IP version";
        return -1;
    }
    if (n < l4 + 20) {
        *why = "packet shorter than its TCP header";
        return -1;
    }
    Py_ssize_t hl = l4 + (p[l4 + 12] >> 4) * 4;
    if (hl < l4 + 20 || hl > n) {
        *why = "TCP data offset outside the packet";
        return -1;
    }
    if (hl >= n) {
        *why = "segmentation offload with no payload";
        return -1;
    }
    if (gso_size == 0) {
        *why = "segmentation offload with no segment size";
        return -1;
    }
    Py_ssize_t seg = gso_size < max_packet - hl ? gso_size : max_packet - hl;
    if (seg < 1) {
        *why = "headers too long to segment";
        return -1;
    }
    c->gso = 1;
    c->v4 = version == 4;
    c->l4 = l4;
    c->hl = hl;
    c->seg = seg;
    c->count = (n - hl + seg - 1) / seg;
    c->id = c->v4 ? get_be16(p + 4) : 0;
    c->seq = (uint32_t)p[l4 + 4] << 24 | (uint32_t)p[l4 + 5] << 16 | (uint32_t)p[l4 + 6] << 8 | p[l4 + 7];
    c->flags = p[l4 + 13];
    return 0;
}

static Py_ssize_t cut_len(const cut_t *c, Py_ssize_t i) {
    if (!c->gso)
        return c->n;
    Py_ssize_t off = c->hl + i * c->seg, rest = c->n - off;
    return c->hl + (rest < c->seg ? rest : c->seg);
}

/* Packet i, cut_len(c, i) bytes, written at dst (which must not overlap the source). */
static void cut_write(const cut_t *c, Py_ssize_t i, uint8_t *dst) {
    Py_ssize_t len = cut_len(c, i);
    if (!c->gso) {
        memcpy(dst, c->pkt, c->n);
        if (c->finish) { /* the field holds the pseudo-header's sum: summed in place, wherever it is */
            uint16_t sum = (uint16_t)~fold(ones_sum(dst + c->cstart, c->n - c->cstart, 0));
            put_be16(dst + c->cstart + c->coff, sum ? sum : 0xFFFF);
        }
        return;
    }
    Py_ssize_t hl = c->hl, l4 = c->l4;
    memcpy(dst, c->pkt, hl);
    memcpy(dst + hl, c->pkt + hl + i * c->seg, len - hl);
    uint8_t flags = c->flags;
    if (c->count > 1)
        flags &= (uint8_t)(i == 0 ? ~(TCP_FIN | TCP_PSH) : i == c->count - 1 ? ~TCP_CWR : ~(TCP_FIN | TCP_PSH | TCP_CWR));
    uint32_t seq = c->seq + (uint32_t)(i * c->seg);
    dst[l4 + 4] = (uint8_t)(seq >> 24);
    dst[l4 + 5] = (uint8_t)(seq >> 16);
    dst[l4 + 6] = (uint8_t)(seq >> 8);
    dst[l4 + 7] = (uint8_t)seq;
    dst[l4 + 13] = flags;
    uint64_t pseudo;
    if (c->v4) {
        put_be16(dst + 2, (uint16_t)len);
        put_be16(dst + 4, (uint16_t)(c->id + i));
        put_be16(dst + 10, 0);
        put_be16(dst + 10, (uint16_t)~fold(ones_sum(dst, l4, 0)));
        pseudo = ones_sum(dst + 12, 8, 0);
    } else {
        put_be16(dst + 4, (uint16_t)(len - 40));
        pseudo = ones_sum(dst + 8, 32, 0);
    }
    put_be16(dst + l4 + 16, 0);
    uint16_t sum = (uint16_t)~fold(ones_sum(dst + l4, len - l4, pseudo + 6 + (uint64_t)(len - l4)));
    put_be16(dst + l4 + 16, sum ? sum : 0xFFFF);
}

/* wire_packets(unit, max_packet) -> list of bytes; ValueError for a unit that cannot be cut */
static PyObject *wire_packets(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "wire_packets(unit, max_packet)");
        return NULL;
    }
    Py_ssize_t max_packet = PyLong_AsSsize_t(args[1]);
    if (max_packet == -1 && PyErr_Occurred())
        return NULL;
    if (max_packet < 1 || max_packet > 65535) {
        PyErr_SetString(PyExc_ValueError, "max_packet is in 1..65535");
        return NULL;
    }
    Py_buffer in;
    if (get_in(args[0], &in, "unit") < 0)
        return NULL;
    cut_t c;
    const char *why = NULL;
    PyObject *list = NULL;
    if (cut_plan(&c, in.buf, in.len, max_packet, &why) < 0) {
        PyErr_SetString(PyExc_ValueError, why);
        goto done;
    }
    list = PyList_New(c.count);
    for (Py_ssize_t i = 0; list != NULL && i < c.count; i++) {
        PyObject *b = PyBytes_FromStringAndSize(NULL, cut_len(&c, i));
        if (b == NULL) {
            Py_CLEAR(list);
            break;
        }
        cut_write(&c, i, (uint8_t *)PyBytes_AS_STRING(b));
        PyList_SET_ITEM(list, i, b);
    }
done:
    PyBuffer_Release(&in);
    return list;
}

/* ------------------------------------------------------------------ the session */

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *seal;
    EVP_CIPHER_CTX *open;
    PyThread_type_lock seal_lock;
    PyThread_type_lock open_lock;
    uint32_t remote_index;
    window_t replay;
    uint8_t *super;        /* read_seal's buffer for a TSO read (segment > 0), allocated at first use */
    Py_ssize_t super_cap;
    Py_ssize_t pending;    /* bytes of a read in `super` that did not fit the last call's buffer */
} SessionObject;

static const EVP_CIPHER *chacha; /* fetched once, at import (before a forwarder drops root) */

static void take(PyThread_type_lock lock) {
    if (PyThread_acquire_lock(lock, NOWAIT_LOCK))
        return;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(lock, WAIT_LOCK);
    Py_END_ALLOW_THREADS
}

static PyObject *crypto_error(const char *what) {
    PyErr_Format(PyExc_RuntimeError, "libcrypto: %s failed", what);
    return NULL;
}

static void nonce_for(uint8_t nonce[12], uint64_t counter) {
    memset(nonce, 0, 4);
    put_le64(nonce + 4, counter);
}

/* Seals in[0:n] to msg (header, ciphertext at msg+16, tag); in may be msg+16 exactly. 0 on success. */
static int seal_one(EVP_CIPHER_CTX *ctx, uint32_t receiver, uint64_t counter, const uint8_t *in, int n,
                    uint8_t *msg) {
    uint8_t nonce[12];
    int len = 0;
    nonce_for(nonce, counter);
    put_le32(msg, MSG_TRANSPORT);
    put_le32(msg + 4, receiver);
    put_le64(msg + 8, counter);
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1)
        return -1;
    if (n > 0 && (EVP_EncryptUpdate(ctx, msg + HEADER_LEN, &len, in, n) != 1 || len != n))
        return -1;
    if (EVP_EncryptFinal_ex(ctx, msg + HEADER_LEN + n, &len) != 1)
        return -1;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, msg + HEADER_LEN + n) != 1)
        return -1;
    return 0;
}

/* Opens msg[0:n] (n >= 32) into out: 0 authentic, 1 forged, -1 libcrypto failed. */
static int open_one(EVP_CIPHER_CTX *ctx, uint64_t counter, const uint8_t *msg, int n, uint8_t *out) {
    uint8_t nonce[12], tag[TAG_LEN];
    int size = n - HEADER_LEN - TAG_LEN, len = 0;
    nonce_for(nonce, counter);
    memcpy(tag, msg + n - TAG_LEN, TAG_LEN);
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1)
        return -1;
    if (size > 0 && (EVP_DecryptUpdate(ctx, out, &len, msg + HEADER_LEN, size) != 1 || len != size))
        return -1;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) != 1)
        return -1;
    return EVP_DecryptFinal_ex(ctx, out + size, &len) == 1 ? 0 : 1;
}

static EVP_CIPHER_CTX *keyed(const uint8_t *key, int encrypt) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return NULL;
    if (EVP_CipherInit_ex(ctx, chacha, NULL, key, NULL, encrypt) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static int Session_init(SessionObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"send_key", "receive_key", "remote_index", NULL};
    Py_buffer send, receive;
    PyObject *index_obj;
    if (self->seal != NULL) {
        PyErr_SetString(PyExc_TypeError, "a Session is keyed once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*y*O!", kwlist, &send, &receive, &PyLong_Type, &index_obj))
        return -1;
    int rc = -1;
    uint64_t index = 0;
    int index_ok = counter_arg(index_obj, &index); /* an int in u64, checked, never wrapped */
    if (index_ok < 0) {
        /* the TypeError is set */
    } else if (send.len != KEY_LEN || receive.len != KEY_LEN) {
        PyErr_SetString(PyExc_ValueError, "keys are 32 bytes");
    } else if (index_ok == 0 || index > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "an index is a u32");
    } else {
        self->seal = keyed(send.buf, 1);
        self->open = keyed(receive.buf, 0);
        self->seal_lock = PyThread_allocate_lock();
        self->open_lock = PyThread_allocate_lock();
        if (self->seal == NULL || self->open == NULL)
            crypto_error("keying ChaCha20-Poly1305");
        else if (self->seal_lock == NULL || self->open_lock == NULL)
            PyErr_NoMemory();
        else
            rc = 0;
        self->remote_index = (uint32_t)index;
        window_init(&self->replay, REJECT_AFTER_MESSAGES);
    }
    PyBuffer_Release(&send);
    PyBuffer_Release(&receive);
    return rc;
}

static void Session_dealloc(SessionObject *self) {
    EVP_CIPHER_CTX_free(self->seal); /* clears the key schedule */
    EVP_CIPHER_CTX_free(self->open);
    if (self->seal_lock)
        PyThread_free_lock(self->seal_lock);
    if (self->open_lock)
        PyThread_free_lock(self->open_lock);
    PyMem_Free(self->super);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(SessionObject *self) {
    if (self->seal == NULL || self->open == NULL || self->seal_lock == NULL || self->open_lock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Session was not keyed");
        return 0;
    }
    return 1;
}

/* How every Session method starts: keyed, and called with `want` arguments (`usage` names them).
 * 0, or -1 with the exception set. */
static int method_start(SessionObject *self, Py_ssize_t nargs, Py_ssize_t want, const char *usage) {
    if (!ready(self))
        return -1;
    if (nargs != want) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    return 0;
}

/* A message counter: an int in u64, checked, never wrapped. 0, or -1 with the exception set. */
static int counter_of(PyObject *obj, uint64_t *out) {
    int ok = counter_arg(obj, out);
    if (ok == 0)
        PyErr_SetString(PyExc_OverflowError, "counter outside u64");
    return ok > 0 ? 0 : -1;
}

/* seal_into(counter, payload, out, pos) -> end */
static PyObject *Session_seal_into(SessionObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (method_start(self, nargs, 4, "seal_into(counter, payload, out, pos)") < 0)
        return NULL;
    uint64_t counter;
    if (counter_of(args[0], &counter) < 0)
        return NULL;
    Py_ssize_t pos = PyLong_AsSsize_t(args[3]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer in, out;
    if (get_in(args[1], &in, "payload") < 0)
        return NULL;
    if (get_out(args[2], &out) < 0) {
        PyBuffer_Release(&in);
        return NULL;
    }
    PyObject *result = NULL;
    if (pos < 0 || pos > out.len || out.len - pos < HEADER_LEN + in.len + TAG_LEN) {
        PyErr_SetString(PyExc_ValueError, "the message does not fit the buffer at pos");
    } else {
        uint8_t *msg = (uint8_t *)out.buf + pos;
        if (shifted_overlap(in.buf, in.len, msg, HEADER_LEN + in.len + TAG_LEN) && in.buf != msg + HEADER_LEN) {
            PyErr_SetString(PyExc_ValueError, "payload overlaps the message other than in place");
        } else {
            int rc;
            take(self->seal_lock);
            if (in.len >= 4096) {
                Py_BEGIN_ALLOW_THREADS
                rc = seal_one(self->seal, self->remote_index, counter, in.buf, (int)in.len, msg);
                Py_END_ALLOW_THREADS
            } else {
                rc = seal_one(self->seal, self->remote_index, counter, in.buf, (int)in.len, msg);
            }
            PyThread_release_lock(self->seal_lock);
            result = rc == 0 ? PyLong_FromSsize_t(pos + HEADER_LEN + in.len + TAG_LEN) : crypto_error("seal");
        }
    }
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return result;
}

static Py_ssize_t padded_len(Py_ssize_t m, Py_ssize_t mtu) {
    if (mtu <= 0)
        return m;
    Py_ssize_t up = (m + 15) & ~(Py_ssize_t)15, floor = m > mtu ? m : mtu;
    return up < floor ? up : floor;
}

/* seal_many(counter, units, out, pos, mtu) -> (lengths, next counter)
 * Each unit (mtu > 0: padded with zeros to a multiple of 16, no further than the mtu) sealed
 * into out side by side from pos; stops at the first that does not fit. */
static PyObject *Session_seal_many(SessionObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (method_start(self, nargs, 5, "seal_many(counter, units, out, pos, mtu)") < 0)
        return NULL;
    uint64_t counter;
    if (counter_of(args[0], &counter) < 0)
        return NULL;
    Py_ssize_t pos = PyLong_AsSsize_t(args[3]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t mtu = PyLong_AsSsize_t(args[4]);
    if (mtu == -1 && PyErr_Occurred())
        return NULL;
    if (mtu > MAX_PAYLOAD) {
        PyErr_SetString(PyExc_ValueError, "mtu too large");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[1], "units is a sequence of buffers");
    if (seq == NULL)
        return NULL;
    Py_buffer out;
    if (get_out(args[2], &out) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    PyObject *lengths = PyList_New(0), *result = NULL;
    if (lengths == NULL)
        goto done;
    if (pos < 0 || pos > out.len) {
        PyErr_SetString(PyExc_ValueError, "pos outside the buffer");
        goto done;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (counter >= REJECT_AFTER_MESSAGES)
            break; /* the caller checks its counter; never a nonce reused past the limit */
        Py_buffer in;
        if (get_in(PySequence_Fast_GET_ITEM(seq, i), &in, "unit") < 0)
            goto done;
        Py_ssize_t size = padded_len(in.len, mtu);
        if (out.len - pos < HEADER_LEN + size + TAG_LEN) {
            PyBuffer_Release(&in);
            break;
        }
        uint8_t *msg = (uint8_t *)out.buf + pos;
        if (shifted_overlap(in.buf, in.len, msg, HEADER_LEN + size + TAG_LEN) && in.buf != msg + HEADER_LEN) {
            PyBuffer_Release(&in);
            PyErr_SetString(PyExc_ValueError, "a unit overlaps its message other than in place");
            goto done;
        }
        if (in.buf != msg + HEADER_LEN)
            memcpy(msg + HEADER_LEN, in.buf, in.len);
        memset(msg + HEADER_LEN + in.len, 0, size - in.len);
        PyBuffer_Release(&in);
        take(self->seal_lock);
        int rc = seal_one(self->seal, self->remote_index, counter, msg + HEADER_LEN, (int)size, msg);
        PyThread_release_lock(self->seal_lock);
        if (rc != 0) {
            crypto_error("seal");
            goto done;
        }
        PyObject *n = PyLong_FromSsize_t(HEADER_LEN + size + TAG_LEN);
        if (n == NULL || PyList_Append(lengths, n) < 0) {
            Py_XDECREF(n);
            goto done;
        }
        Py_DECREF(n);
        counter++;
        pos += HEADER_LEN + size + TAG_LEN;
    }
    result = Py_BuildValue("(OK)", lengths, (unsigned long long)counter);
done:
    Py_XDECREF(lengths);
    PyBuffer_Release(&out);
    Py_DECREF(seq);
    return result;
}

/* read_seal(fd, counter, count, out, pos, skip, lead, mtu, read_size, segment)
 *   -> (lengths, nbytes, next counter, dropped)
 * Up to `count` reads from fd without waiting (preadv2 RWF_NOWAIT), sealed in place into out
 * from pos. With segment 0, each read is one unit, laid out as device.UnitReader lays it out:
 * `skip` bytes of the read (pi, and the virtio header in WireGuard's form) dropped, `lead` zero
 * bytes before the rest (our form's flags byte, and a zero virtio header when the device has
 * none), padded as seal_many pads; a read that gives nothing past `skip` is no unit. With
 * segment > 0 (a tun with vnet_hdr and offloads, WireGuard's form), each read (after `skip`) is
 * a virtio header and a packet of up to 64 KB, cut by wire_packets into fully checksummed packets
 * of at most `segment` bytes, each padded and sealed; one that cannot be cut is counted in
 * `dropped`, and one whose packets do not all fit the rest of out waits in the session for the
 * next call. Stops when the device has nothing or out is full; an error before any message is
 * an OSError, after one it ends the batch. */
static PyObject *Session_read_seal(SessionObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (method_start(self, nargs, 10,
                     "read_seal(fd, counter, count, out, pos, skip, lead, mtu, read_size, segment)") < 0)
        return NULL;
    long fdl = PyLong_AsLong(args[0]);
    if (fdl == -1 && PyErr_Occurred())
        return NULL;
    if (fdl < 0 || fdl > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "not a descriptor");
        return NULL;
    }
    int fd = (int)fdl;
    uint64_t counter;
    if (counter_of(args[1], &counter) < 0)
        return NULL;
    Py_ssize_t nums[7]; /* count, pos, skip, lead, mtu, read_size, segment */
    const int at[7] = {2, 4, 5, 6, 7, 8, 9};
    for (int i = 0; i < 7; i++) {
        nums[i] = PyLong_AsSsize_t(args[at[i]]);
        if (nums[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    Py_ssize_t count = nums[0], pos = nums[1], skip = nums[2], lead = nums[3], mtu = nums[4];
    Py_ssize_t read_size = nums[5], segment = nums[6];
    uint8_t scratch[64];
    if (count < 0 || skip < 0 || skip > (Py_ssize_t)sizeof(scratch) || lead < 0 || lead > 64 ||
        mtu > MAX_PAYLOAD || read_size <= VNET_LEN || read_size > MAX_PAYLOAD || segment < 0 || segment > 65535 ||
        (segment > 0 && lead != 0)) {
        PyErr_SetString(PyExc_ValueError, "read_seal: an argument is out of range");
        return NULL;
    }
    if (segment > 0 && self->super_cap < read_size) {
        uint8_t *grown = PyMem_Realloc(self->super, read_size);
        if (grown == NULL)
            return PyErr_NoMemory();
        self->super = grown;
        self->super_cap = read_size;
        self->pending = 0;
    }
    Py_buffer out;
    if (get_out(args[3], &out) < 0)
        return NULL;
    PyObject *lengths = PyList_New(0), *result = NULL;
    Py_ssize_t nbytes = 0, dropped = 0;
    if (lengths == NULL)
        goto done;
    if (pos < 0 || pos > out.len) {
        PyErr_SetString(PyExc_ValueError, "pos outside the buffer");
        goto done;
    }
    /* the most a unit may take: header, lead, a full read padded to 16, tag */
    Py_ssize_t most = HEADER_LEN + lead + read_size + 15 + TAG_LEN;
    take(self->seal_lock);
    for (Py_ssize_t i = 0; i < count && counter < REJECT_AFTER_MESSAGES; i++) {
        if (segment == 0 && out.len - pos < most)
            break;
        uint8_t *msg = (uint8_t *)out.buf + pos, *unit = msg + HEADER_LEN;
        Py_ssize_t m;
        if (segment > 0 && self->pending > 0) {
            m = self->pending; /* what did not fit last time */
        } else {
            struct iovec iov[2];
            int k = 0;
            if (skip > 0)
                iov[k++] = (struct iovec){.iov_base = scratch, .iov_len = (size_t)skip};
            if (segment > 0)
                iov[k++] = (struct iovec){.iov_base = self->super, .iov_len = (size_t)read_size};
            else
                iov[k++] = (struct iovec){.iov_base = unit + lead, .iov_len = (size_t)read_size};
            ssize_t n;
            Py_BEGIN_ALLOW_THREADS
            n = preadv2(fd, iov, k, -1, RWF_NOWAIT);
            Py_END_ALLOW_THREADS
            if (n < 0) {
                int err = errno;
                if (err == EAGAIN || err == EINTR)
                    break;
                if (PyList_GET_SIZE(lengths) == 0) {
                    PyThread_release_lock(self->seal_lock);
                    errno = err;
                    PyErr_SetFromErrno(PyExc_OSError);
                    goto done;
                }
                break;
            }
            m = (Py_ssize_t)n - skip;
        }
        if (m <= 0)
            continue; /* no unit (as UnitReader: an empty read) */
        if (segment == 0) {
            Py_ssize_t plain = lead + m, size = padded_len(plain, mtu);
            memset(unit, 0, lead);
            memset(unit + plain, 0, size - plain);
            if (seal_one(self->seal, self->remote_index, counter, unit, (int)size, msg) != 0)
                goto crypto_failed;
            PyObject *len = PyLong_FromSsize_t(HEADER_LEN + size + TAG_LEN);
            if (len == NULL || PyList_Append(lengths, len) < 0) {
                Py_XDECREF(len);
                goto failed;
            }
            Py_DECREF(len);
            counter++;
            nbytes += size;
            pos += HEADER_LEN + size + TAG_LEN;
            continue;
        }
        cut_t c;
        const char *why;
        self->pending = 0;
        if (cut_plan(&c, self->super, m, segment, &why) < 0) {
            dropped++;
            continue;
        }
        Py_ssize_t need = 0;
        for (Py_ssize_t j = 0; j < c.count; j++)
            need += HEADER_LEN + padded_len(cut_len(&c, j), mtu) + TAG_LEN;
        if (need > out.len - pos || (uint64_t)c.count > REJECT_AFTER_MESSAGES - counter) {
            if (PyList_GET_SIZE(lengths) == 0 && need > out.len - pos) {
                dropped++; /* it would never fit this buffer */
                continue;
            }
            self->pending = m;
            break;
        }
        for (Py_ssize_t j = 0; j < c.count; j++) {
            Py_ssize_t plain = cut_len(&c, j), size = padded_len(plain, mtu);
            msg = (uint8_t *)out.buf + pos;
            cut_write(&c, j, msg + HEADER_LEN);
            memset(msg + HEADER_LEN + plain, 0, size - plain);
            if (seal_one(self->seal, self->remote_index, counter, msg + HEADER_LEN, (int)size, msg) != 0)
                goto crypto_failed;
            PyObject *len = PyLong_FromSsize_t(HEADER_LEN + size + TAG_LEN);
            if (len == NULL || PyList_Append(lengths, len) < 0) {
                Py_XDECREF(len);
                goto failed;
            }
            Py_DECREF(len);
            counter++;
            nbytes += size;
            pos += HEADER_LEN + size + TAG_LEN;
        }
    }
    PyThread_release_lock(self->seal_lock);
    result = Py_BuildValue("(OnKn)", lengths, nbytes, (unsigned long long)counter, dropped);
    goto done;
crypto_failed:
    crypto_error("seal");
failed:
    PyThread_release_lock(self->seal_lock);
done:
    Py_XDECREF(lengths);
    PyBuffer_Release(&out);
    return result;
}

/* open_into(msg, out) -> the payload's length, or REPLAYED / FORGED
 * The caller checked the type and the receiver index; the replay window is checked before the
 * AEAD and moved only after the message authenticated. */
static PyObject *Session_open_into(SessionObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (method_start(self, nargs, 2, "open_into(msg, out)") < 0)
        return NULL;
    Py_buffer msg, out;
    if (get_in(args[0], &msg, "message") < 0)
        return NULL;
    if (get_out(args[1], &out) < 0) {
        PyBuffer_Release(&msg);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t size = msg.len - HEADER_LEN - TAG_LEN;
    if (msg.len < HEADER_LEN + TAG_LEN) {
        PyErr_SetString(PyExc_ValueError, "shorter than a transport message");
    } else if (out.len < size) {
        PyErr_SetString(PyExc_ValueError, "the payload does not fit the buffer");
    } else if (shifted_overlap((const uint8_t *)msg.buf + HEADER_LEN, size, out.buf, size) &&
               (const uint8_t *)msg.buf + HEADER_LEN != out.buf) {
        PyErr_SetString(PyExc_ValueError, "out overlaps the message other than in place");
    } else {
        const uint8_t *m = msg.buf;
        uint64_t counter = get_le64(m + 8);
        long verdict;
        take(self->open_lock);
        if (!window_check(&self->replay, counter)) {
            verdict = REPLAYED;
        } else {
            int rc;
            if (size >= 4096) {
                Py_BEGIN_ALLOW_THREADS
                rc = open_one(self->open, counter, m, (int)msg.len, out.buf);
                Py_END_ALLOW_THREADS
            } else {
                rc = open_one(self->open, counter, m, (int)msg.len, out.buf);
            }
            if (rc < 0)
                verdict = -100;
            else if (rc == 1)
                verdict = FORGED;
            else
                verdict = window_accept(&self->replay, counter) ? (long)size : REPLAYED;
        }
        PyThread_release_lock(self->open_lock);
        result = verdict == -100 ? crypto_error("open") : PyLong_FromLong(verdict);
    }
    PyBuffer_Release(&msg);
    PyBuffer_Release(&out);
    return result;
}

/* ------------------------------------------------------------------ the receive turn
 * open_run: a run of transport datagrams (one UDP_GRO receive: equal-sized, the last maybe
 * shorter) for this session, opened and written to the device without Python per datagram.
 * It stops at the first datagram that is not a transport message for `index`, is replayed, or
 * does not authenticate (the caller handles that one and the rest as before), so the protocol's
 * decisions stay in Python: it gets how many authenticated and updates the peer once per run.
 *
 * Each plaintext is WireGuard's: an IP packet whose own length says where the padding starts.
 * On a device with vnet_hdr, consecutive in-order segments of one TCP flow are glued into one
 * super-packet (GSO_TCPV4/6, NEEDS_CSUM, the pseudo-header's partial checksum), as
 * device.Gro/vnet.Coalescer do; fastpath.PySession.open_run is the exact model. */

#define RUN_MAX_SEGMENTS 64 /* vnet.MAX_SEGMENTS */
#define RUN_MAX_IP 65535
#define RUN_MAX_HL 120 /* 60 bytes of IPv4 header or 40 of IPv6, then up to 60 of TCP */
#define TCP_ACK 16
#define IPPROTO_TCP_ 6

typedef struct {
    int fd, vnet, gone;
    Py_ssize_t bad_inner, refused;
    /* the run being glued: its first packet's headers, and where each payload lies */
    int active, v4;
    Py_ssize_t hl, l4, seg, len0, bytes, nseg;
    uint8_t head[RUN_MAX_HL];
    uint8_t expect[RUN_MAX_HL]; /* the exact headers of the run's next full segment */
    uint64_t pseudo, ip_base;
    uint16_t id0, id;
    uint32_t seq0, seq;
    uint8_t flags;
    const uint8_t *first;
    struct iovec iov[RUN_MAX_SEGMENTS + 2];
} run_t;

static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v) {
    put_be16(p, (uint16_t)(v >> 16));
    put_be16(p + 2, (uint16_t)v);
}

static void vnet_hdr(uint8_t h[VNET_LEN], uint8_t flags, uint8_t gso, uint16_t hdr_len, uint16_t gso_size,
                     uint16_t start, uint16_t offset) {
    h[0] = flags;
    h[1] = gso;
    h[2] = (uint8_t)hdr_len; /* little-endian, as the kernel's virtio_net_hdr */
    h[3] = (uint8_t)(hdr_len >> 8);
    h[4] = (uint8_t)gso_size;
    h[5] = (uint8_t)(gso_size >> 8);
    h[6] = (uint8_t)start;
    h[7] = (uint8_t)(start >> 8);
    h[8] = (uint8_t)offset;
    h[9] = (uint8_t)(offset >> 8);
}

static void run_write(run_t *r, struct iovec *iov, int count) {
    if (r->gone)
        return;
    if (writev(r->fd, iov, count) < 0) {
        if (errno == EBADFD)
            r->gone = 1;
        else
            r->refused++;
    }
}

/* The IP packet's own length if plain[0:n] holds one (WireGuard's padding after it), else 0. */
static Py_ssize_t ip_length(const uint8_t *p, Py_ssize_t n) {
    Py_ssize_t length;
    int version = n > 0 ? p[0] >> 4 : 0;
    if (version == 4 && n >= 20)
        length = get_be16(p + 2);
    else if (version == 6 && n >= 40)
        length = 40 + (Py_ssize_t)get_be16(p + 4);
    else
        return 0;
    return length >= 20 && length <= n ? length : 0;
}

/* If p[0:n] (an IP packet of exactly its own length) is a TCP segment that may be glued: its
 * TCP header's offset and end; the checksum field is then set to the pseudo-header's sum. */
static int as_segment(uint8_t *p, Py_ssize_t n, Py_ssize_t *l4, Py_ssize_t *end, uint64_t *pseudo) {
    uint64_t sum;
    if (p[0] >> 4 == 4) {
        if ((p[0] & 0x0F) != 5 || p[9] != IPPROTO_TCP_ || (p[6] & 0x3F) || p[7])
            return 0; /* options or fragments: as it came */
        *l4 = 20;
        sum = ones_sum(p + 12, 8, 0);
    } else {
        if (p[6] != IPPROTO_TCP_)
            return 0;
        *l4 = 40;
        sum = ones_sum(p + 8, 32, 0);
    }
    if (n < *l4 + 20)
        return 0;
    *end = *l4 + (p[*l4 + 12] >> 4) * 4;
    if (*end < *l4 + 20 || *end >= n || *end > RUN_MAX_HL)
        return 0; /* no payload, or a data offset outside the packet */
    *pseudo = sum + IPPROTO_TCP_;
    put_be16(p + *l4 + 16, fold(*pseudo + (uint64_t)(n - *l4)));
    return 1;
}

/* vnet._Headers.make: the run's headers for an IP length, id, sequence number and flags. */
static void run_headers(const run_t *r, uint8_t *h, Py_ssize_t ip_len, uint16_t id, uint32_t seq, uint8_t flags) {
    memcpy(h, r->head, (size_t)r->hl);
    if (r->v4) {
        put_be16(h + 2, (uint16_t)ip_len);
        put_be16(h + 4, id);
        put_be16(h + 10, (uint16_t)~fold(r->ip_base + (uint64_t)ip_len + id));
    } else {
        put_be16(h + 4, (uint16_t)(ip_len - 40));
    }
    put_be32(h + r->l4 + 4, seq);
    h[r->l4 + 13] = flags;
    put_be16(h + r->l4 + 16, fold(r->pseudo + (uint64_t)(ip_len - r->l4)));
}

static void run_flush(run_t *r) {
    if (!r->active)
        return;
    r->active = 0;
    uint8_t vh[VNET_LEN], h[RUN_MAX_HL];
    if (r->nseg == 1) {
        vnet_hdr(vh, F_NEEDS_CSUM, GSO_NONE, 0, 0, (uint16_t)r->l4, 16);
        r->iov[0].iov_base = vh;
        r->iov[0].iov_len = VNET_LEN;
        r->iov[1].iov_base = (void *)r->first;
        r->iov[1].iov_len = (size_t)r->len0;
        run_write(r, r->iov, 2);
        return;
    }
    vnet_hdr(vh, F_NEEDS_CSUM, r->v4 ? GSO_TCPV4 : GSO_TCPV6, (uint16_t)r->hl, (uint16_t)r->seg, (uint16_t)r->l4, 16);
    run_headers(r, h, r->bytes, r->id0, r->seq0, r->flags);
    r->iov[0].iov_base = vh;
    r->iov[0].iov_len = VNET_LEN;
    r->iov[1].iov_base = h;
    r->iov[1].iov_len = (size_t)r->hl;
    run_write(r, r->iov, (int)r->nseg + 2);
}

/* vnet.Coalescer._step: predict the run's next segment, or flush when one write takes no more. */
static void run_step(run_t *r) {
    if (r->nseg >= RUN_MAX_SEGMENTS || r->bytes + r->seg > RUN_MAX_IP) {
        run_flush(r);
        return;
    }
    r->id = (uint16_t)(r->v4 ? r->id + 1 : 0);
    r->seq += (uint32_t)r->seg;
    run_headers(r, r->expect, r->len0, r->id, r->seq, TCP_ACK);
}

static void run_append(run_t *r, const uint8_t *payload, Py_ssize_t size) {
    r->iov[r->nseg + 2].iov_base = (void *)payload;
    r->iov[r->nseg + 2].iov_len = (size_t)size;
    r->nseg++;
    r->bytes += size;
}

/* One packet to the device as it is, behind a header that asks for no segmentation (and, with
 * F_NEEDS_CSUM, for the checksum at start + offset). */
static void run_write_alone(run_t *r, uint8_t *p, Py_ssize_t n, uint8_t flags, uint16_t start, uint16_t offset) {
    uint8_t vh[VNET_LEN];
    struct iovec two[2];
    vnet_hdr(vh, flags, GSO_NONE, 0, 0, start, offset);
    two[0].iov_base = vh;
    two[0].iov_len = VNET_LEN;
    two[1].iov_base = p;
    two[1].iov_len = (size_t)n;
    run_write(r, two, 2);
}

/* One authenticated IP packet p[0:n] (exactly its own length) to the device, or to the run. */
static void run_take(run_t *r, uint8_t *p, Py_ssize_t n) {
    struct iovec one[1];
    Py_ssize_t l4 = 0, end = 0;
    uint64_t pseudo = 0;
    if (!r->vnet) {
        one[0].iov_base = p;
        one[0].iov_len = (size_t)n;
        run_write(r, one, 1);
        return;
    }
    if (!as_segment(p, n, &l4, &end, &pseudo)) {
        run_flush(r);
        run_write_alone(r, p, n, 0, 0, 0);
        return;
    }
    if (r->active) {
        Py_ssize_t hl = r->hl;
        if (n == r->len0 && memcmp(p, r->expect, (size_t)hl) == 0) { /* the run's next segment */
            run_append(r, p + hl, r->seg);
            run_step(r);
            return;
        }
        if (n != r->len0 && n > hl && n - hl < r->seg) { /* a shorter one may end the run */
            uint8_t h[RUN_MAX_HL];
            static const uint8_t tail_flags[2] = {TCP_ACK | TCP_PSH, TCP_ACK};
            for (int i = 0; i < 2; i++) {
                run_headers(r, h, n, r->id, r->seq, tail_flags[i]);
                if (memcmp(p, h, (size_t)hl) == 0) {
                    run_append(r, p + hl, n - hl);
                    r->flags = tail_flags[i];
                    run_flush(r);
                    return;
                }
            }
        }
    }
    run_flush(r);
    if (p[l4 + 13] != TCP_ACK) { /* PSH, FIN, SYN, ...: as it is, checksum partial */
        run_write_alone(r, p, n, F_NEEDS_CSUM, (uint16_t)l4, 16);
        return;
    }
    r->active = 1;
    r->v4 = p[0] >> 4 == 4;
    r->hl = end;
    r->l4 = l4;
    r->seg = n - end;
    r->len0 = n;
    r->bytes = end;
    r->nseg = 0;
    r->first = p;
    memcpy(r->head, p, (size_t)end);
    r->pseudo = pseudo;
    r->ip_base = r->v4 ? ones_sum(p, 2, 0) + ones_sum(p + 6, 4, 0) + ones_sum(p + 12, 8, 0) : 0;
    r->id = r->id0 = r->v4 ? get_be16(p + 4) : 0;
    r->seq = r->seq0 = get_be32(p + l4 + 4);
    r->flags = TCP_ACK;
    run_append(r, p + end, n - end);
    run_step(r);
}

static int ssize_arg(PyObject *obj, Py_ssize_t *out, const char *what) {
    Py_ssize_t v = PyLong_Check(obj) ? PyLong_AsSsize_t(obj) : -1;
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be a non-negative int", what);
        return -1;
    }
    *out = v;
    return 0;
}

/* open_run(buf, start, end, seg, index, fd, vnet_hdr, scratch)
 * -> (consumed, packets, bytes, bad_inner, refused) */
static PyObject *Session_open_run(SessionObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (method_start(self, nargs, 8, "open_run(buf, start, end, seg, index, fd, vnet_hdr, scratch)") < 0)
        return NULL;
    Py_ssize_t start, end, seg, fd;
    uint64_t index = 0;
    int ok = counter_arg(args[4], &index);
    if (ok < 0)
        return NULL;
    if (ok == 0 || index > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "an index is a u32");
        return NULL;
    }
    if (ssize_arg(args[1], &start, "start") < 0 || ssize_arg(args[2], &end, "end") < 0 ||
        ssize_arg(args[3], &seg, "seg") < 0 || ssize_arg(args[5], &fd, "fd") < 0)
        return NULL;
    int vnet = PyObject_IsTrue(args[6]);
    if (vnet < 0)
        return NULL;
    if (seg < 1 || fd > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "seg must be positive and fd a descriptor");
        return NULL;
    }
    Py_buffer in, scratch;
    if (PyObject_GetBuffer(args[0], &in, PyBUF_SIMPLE) < 0)
        return NULL;
    if (get_out(args[7], &scratch) < 0) {
        PyBuffer_Release(&in);
        return NULL;
    }
    PyObject *result = NULL;
    if (start > end || end > in.len) {
        PyErr_SetString(PyExc_ValueError, "start and end must lie in the buffer, in order");
    } else if (scratch.len < end - start) {
        PyErr_SetString(PyExc_ValueError, "scratch must hold the run's plaintexts");
    } else if (end - start > 0 && scratch.len > 0 &&
               (const uint8_t *)in.buf < (const uint8_t *)scratch.buf + scratch.len &&
               (const uint8_t *)scratch.buf < (const uint8_t *)in.buf + in.len) {
        PyErr_SetString(PyExc_ValueError, "scratch overlaps the buffer");
    } else {
        run_t *r = PyMem_Calloc(1, sizeof(run_t));
        if (r == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        r->fd = (int)fd;
        r->vnet = vnet;
        const uint8_t *b = in.buf;
        uint8_t *plain = scratch.buf;
        Py_ssize_t consumed = 0, packets = 0, nbytes = 0, pos = 0, off = start;
        int crypto_failed = 0;
        take(self->open_lock);
        Py_BEGIN_ALLOW_THREADS
        while (off < end && !r->gone) {
            Py_ssize_t dl = end - off < seg ? end - off : seg;
            const uint8_t *d = b + off;
            if (dl < HEADER_LEN + TAG_LEN || dl > MAX_PAYLOAD || get_le64(d) != ((uint64_t)index << 32 | MSG_TRANSPORT))
                break; /* (type 4 with three zero bytes, then the index: one little-endian u64) */
            uint64_t counter = get_le64(d + 8);
            if (!window_check(&self->replay, counter))
                break;
            Py_ssize_t size = dl - HEADER_LEN - TAG_LEN;
            int rc = open_one(self->open, counter, d, (int)dl, plain + pos);
            if (rc < 0) {
                crypto_failed = 1;
                break;
            }
            if (rc == 1 || !window_accept(&self->replay, counter))
                break;
            consumed++;
            off += dl;
            if (size == 0)
                continue; /* a keepalive */
            Py_ssize_t length = ip_length(plain + pos, size);
            if (length == 0) {
                r->bad_inner++;
                continue;
            }
            packets++;
            nbytes += size;
            run_take(r, plain + pos, length);
            pos += size;
        }
        run_flush(r);
        Py_END_ALLOW_THREADS
        PyThread_release_lock(self->open_lock);
        if (crypto_failed)
            crypto_error("open");
        else if (r->gone) {
            errno = EBADFD;
            PyErr_SetFromErrno(PyExc_OSError);
        } else
            result = Py_BuildValue("(nnnnn)", consumed, packets, nbytes, r->bad_inner, r->refused);
        PyMem_Free(r);
    }
done:
    PyBuffer_Release(&in);
    PyBuffer_Release(&scratch);
    return result;
}

static PyMethodDef Session_methods[] = {
    {"seal_into", (PyCFunction)(void (*)(void))Session_seal_into, METH_FASTCALL,
     "seal_into(counter, payload, out, pos) -> end: one transport message written at out[pos:]."},
    {"seal_many", (PyCFunction)(void (*)(void))Session_seal_many, METH_FASTCALL,
     "seal_many(counter, units, out, pos, mtu) -> (lengths, next counter)."},
    {"read_seal", (PyCFunction)(void (*)(void))Session_read_seal, METH_FASTCALL,
     "read_seal(fd, counter, count, out, pos, skip, lead, mtu, read_size, segment)\n"
     "-> (lengths, nbytes, next counter, dropped)."},
    {"open_into", (PyCFunction)(void (*)(void))Session_open_into, METH_FASTCALL,
     "open_into(msg, out) -> payload length, or REPLAYED (-2) or FORGED (-1)."},
    {"open_run", (PyCFunction)(void (*)(void))Session_open_run, METH_FASTCALL,
     "open_run(buf, start, end, seg, index, fd, vnet_hdr, scratch)\n"
     "-> (consumed, packets, bytes, bad_inner, refused)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "provisioner.tunnel._fastpath.Session",
    .tp_basicsize = sizeof(SessionObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Session(send_key, receive_key, remote_index): one keypair's AEAD and replay window.",
    .tp_methods = Session_methods,
    .tp_init = (initproc)Session_init,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Session_dealloc,
};

static PyMethodDef module_methods[] = {
    {"wire_packets", (PyCFunction)(void (*)(void))wire_packets, METH_FASTCALL,
     "wire_packets(unit, max_packet) -> [packet]: vnet.wire_packets in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "provisioner.tunnel._fastpath",
    .m_doc = "The compiled per-packet path (see fastpath.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    chacha = EVP_chacha20_poly1305();
    if (chacha == NULL) {
        PyErr_SetString(PyExc_ImportError, "libcrypto has no ChaCha20-Poly1305");
        return NULL;
    }
    if (PyType_Ready(&ReplayType) < 0 || PyType_Ready(&SessionType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "ReplayWindow", (PyObject *)&ReplayType) < 0 ||
        PyModule_AddObjectRef(m, "Session", (PyObject *)&SessionType) < 0 ||
        PyModule_AddIntConstant(m, "FORGED", FORGED) < 0 || PyModule_AddIntConstant(m, "REPLAYED", REPLAYED) < 0 ||
        PyModule_AddIntConstant(m, "WINDOW_SIZE", WINDOW_SIZE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* One key schedule now: libcrypto reads its configuration and loads its provider while the
     * process may still read files (a forwarder drops root before its first packet). */
    static const uint8_t zero[KEY_LEN];
    EVP_CIPHER_CTX *ctx = keyed(zero, 1);
    if (ctx == NULL) {
        Py_DECREF(m);
        PyErr_SetString(PyExc_ImportError, "libcrypto could not key ChaCha20-Poly1305");
        return NULL;
    }
    EVP_CIPHER_CTX_free(ctx);
    return m;
}
