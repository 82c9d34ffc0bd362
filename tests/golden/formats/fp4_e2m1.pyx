# [K] fp4_e2m1: float, 2 exponent and 1 fraction bits, bias 1, max 6.0, subnormals, no Inf, 0 high NaN codes, saturating
cdef inline double q_K(double v, int mode, uint64_t sr, int srn) noexcept nogil:
    return float_round(v, 2, 1, 1, 1, 1,
                       0, 0, 1, 6.0, mode, sr, srn)


cdef inline double qp_K(int neg, int E, uint64_t sig, int sticky, int mode, uint64_t sr,
                                    int srn) noexcept nogil:
    return float_from_parts(neg, E, sig, sticky, 2, 1, 1, 1,
                            1, 0, 0, 1, 6.0,
                            mode, sr, srn)


cdef inline uint64_t enc_K(double r) noexcept nogil:
    return float_encode(r, 4, 1, 1, 1, 1, 1,
                        1, 0x0ULL, 0x7ULL, 0xfULL,
                        0x7ULL, 0xfULL, 6.0, 0.5)


cdef inline double dec_K(uint64_t c) noexcept nogil:
    return float_decode(c, 4, 1, 2, 1, 1, 1,
                        1, 1, 0, 0)


def quantize_K(x, out, int mode, rbits, int srn):
    """float64 x rounded once to the format, into float64 out (x's length; may be x itself) with
    rounding `mode` (MODES); stochastic rounding reads one value of rbits (uint64) per input, of
    srn bits. Checked here."""
    x, out = checked_pair("quantize_K", x, out, np.float64, np.float64)
    rbits = checked_rounding("quantize_K", mode, rbits, x.shape[0], srn)
    quantize_K_unchecked(x, out, mode, rbits, srn)


cdef void quantize_K_range(const double* x, double* out, int mode, const uint64_t* rbits, int srn,
                                       Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef Py_ssize_t b, e
    cdef uint64_t a, s, r, m, fast, slow
    if mode == STOCHASTIC:
        for i in range(lo, hi):
            out[i] = q_K(x[i], mode, rbits[i], srn)
    elif mode == RNE:
        # nearest-even on the bits: in the format's normal range, adding half an ulp less one
        # plus the kept LSB and truncating is the rounding. Branch-free, so that it vectorises:
        # an input outside that range is copied as it is, and noted; then, only in a block of
        # BLOCK where one was, a second pass rounds those (out holds them; a rounded value is
        # in the range, and stays).
        b = lo
        while b < hi:
            e = hi if b + BLOCK > hi else b + BLOCK
            slow = 0
            for i in range(b, e):
                a = archc_bits(x[i])
                s = a & 0x8000000000000000ULL
                a = a ^ s
                r = (a + 0x3ffffffffffffULL + ((a >> 51) & 1)) & 0xfff8000000000000ULL
                fast = in_fast_range(a, r, 0x3ff0000000000000ULL, 0x401fffffffffffffULL, 0x4018000000000000ULL)
                slow |= fast ^ 1
                m = 0 - fast
                out[i] = archc_double(((r & m) | (a & ~m)) | s)
            if slow:
                for i in range(b, e):
                    a = archc_bits(out[i]) & 0x7FFFFFFFFFFFFFFFULL
                    r = (a + 0x3ffffffffffffULL + ((a >> 51) & 1)) & 0xfff8000000000000ULL
                    if not in_fast_range(a, r, 0x3ff0000000000000ULL, 0x401fffffffffffffULL, 0x4018000000000000ULL):
                        out[i] = q_K(out[i], mode, 0, 0)
            b = e
    else:
        for i in range(lo, hi):
            out[i] = q_K(x[i], mode, 0, 0)


cdef void quantize_K_unchecked(const double[::1] x, double[::1] out, int mode, const uint64_t[::1] rbits,
                                           int srn):
    cdef Py_ssize_t c, n = x.shape[0]
    cdef int t = threads(n)
    if n == 0:
        return
    cdef const double* xp = &x[0]
    cdef double* op = &out[0]
    cdef const uint64_t* rp = &rbits[0]
    if t == 1:
        quantize_K_range(xp, op, mode, rp, srn, 0, n)
        return
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="dynamic", num_threads=t):
        quantize_K_range(xp, op, mode, rp, srn, c * CHUNK, chunk_end(c, n))


def quantize32_K(x, out, int mode, rbits, int srn):
    """quantize_K with float32 x and out: every value of this format is a float32, and
    rounding the exact float32 input once is the same as rounding its float64 value."""
    x, out = checked_pair("quantize32_K", x, out, np.float32, np.float32)
    rbits = checked_rounding("quantize32_K", mode, rbits, x.shape[0], srn)
    quantize32_K_unchecked(x, out, mode, rbits, srn)


cdef void quantize32_K_range(const float* x, float* out, int mode, const uint64_t* rbits, int srn,
                                         Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint32_t a, s, r
    if mode == RNE:
        for i in range(lo, hi):
            a = archc_bits32(x[i])
            s = a & 0x80000000U
            a = a ^ s
            if a >= 0x3f800000U and a <= 0x40ffffffU:
                r = (a + 0x1fffffU + ((a >> 22) & 1)) & 0xffc00000U
                if r <= 0x40c00000U:
                    out[i] = archc_float(r | s)
                    continue
            out[i] = <float>q_K(<double>x[i], mode, 0, 0)
    else:
        for i in range(lo, hi):
            out[i] = <float>q_K(<double>x[i], mode, rbits[i] if mode == STOCHASTIC else 0, srn)


cdef void quantize32_K_unchecked(const float[::1] x, float[::1] out, int mode, const uint64_t[::1] rbits,
                                             int srn):
    cdef Py_ssize_t c, n = x.shape[0]
    cdef int t = threads(n)
    if n == 0:
        return
    cdef const float* xp = &x[0]
    cdef float* op = &out[0]
    cdef const uint64_t* rp = &rbits[0]
    if t == 1:
        quantize32_K_range(xp, op, mode, rp, srn, 0, n)
        return
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="dynamic", num_threads=t):
        quantize32_K_range(xp, op, mode, rp, srn, c * CHUNK, chunk_end(c, n))


def encode_K(x, out):
    """Codes (uint64 out, x's length) of float64 x rounded to nearest-even. Checked here."""
    x, out = checked_pair("encode_K", x, out, np.float64, np.uint64)
    encode_K_unchecked(x, out)


cdef void encode_K_range(const double* x, uint64_t* out, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef Py_ssize_t b, e
    cdef uint64_t a, s, r, fast, slow
    b = lo
    while b < hi:
        # as quantize's fast path; a rounded value in the format's normal range has the code of
        # its float64 fields: sign, exponent rebiased, the leading 1 fraction bits. No
        # branch: values outside that range are noted, and encoded by a second pass over the
        # block, only then.
        e = hi if b + BLOCK > hi else b + BLOCK
        slow = 0
        for i in range(b, e):
            a = archc_bits(x[i])
            s = a & 0x8000000000000000ULL
            a = a ^ s
            r = (a + 0x3ffffffffffffULL + ((a >> 51) & 1)) & 0xfff8000000000000ULL
            fast = in_fast_range(a, r, 0x3ff0000000000000ULL, 0x401fffffffffffffULL, 0x4018000000000000ULL)
            slow |= fast ^ 1
            out[i] = (s >> 60) | (((r >> 52) - 1022) << 1) \
                | ((r >> 51) & 1ULL)
        if slow:
            for i in range(b, e):
                a = archc_bits(x[i]) & 0x7FFFFFFFFFFFFFFFULL
                r = (a + 0x3ffffffffffffULL + ((a >> 51) & 1)) & 0xfff8000000000000ULL
                if not in_fast_range(a, r, 0x3ff0000000000000ULL, 0x401fffffffffffffULL, 0x4018000000000000ULL):
                    out[i] = enc_K(q_K(x[i], RNE, 0, 0))
        b = e


cdef void encode_K_unchecked(const double[::1] x, uint64_t[::1] out):
    cdef Py_ssize_t c, n = x.shape[0]
    cdef int t = threads(n)
    if n == 0:
        return
    cdef const double* xp = &x[0]
    cdef uint64_t* op = &out[0]
    if t == 1:
        encode_K_range(xp, op, 0, n)
        return
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="dynamic", num_threads=t):
        encode_K_range(xp, op, c * CHUNK, chunk_end(c, n))


def decode_K(codes, out):
    """Values (float64 out, codes' length) of uint64 codes; returns how many codes have more
    than the format's 4 bits (their values are not meaningful). Checked here."""
    codes, out = checked_pair("decode_K", codes, out, np.uint64, np.float64, "codes")
    return decode_K_unchecked(codes, out)


cdef object DECODED_K = None  # the value of every code, made on first use


cdef const double* decoded_K() except NULL:
    global DECODED_K
    cdef double[::1] t
    cdef uint64_t c
    if DECODED_K is None:
        table = np.empty(16)
        t = table
        for c in range(16):
            t[c] = dec_K(c)
        DECODED_K = table
    t = DECODED_K
    return &t[0]


cdef Py_ssize_t decode_K_range(const uint64_t* codes, double* out, const double* table, Py_ssize_t lo,
                                           Py_ssize_t hi) noexcept nogil:
    """Values from the table; returns the number of codes wider than the format (whose values
    a second pass over the chunk, only then, takes from the general decoder)."""
    cdef Py_ssize_t i, wide = 0
    cdef uint64_t c, seen = 0
    for i in range(lo, hi):  # no branch: the usual case, every code within the format
        c = codes[i]
        seen |= c
        out[i] = table[c & 15]
    if seen >> 4:
        for i in range(lo, hi):
            c = codes[i]
            if c >> 4:
                out[i] = dec_K(c)
                wide += 1
    return wide


cdef Py_ssize_t decode_K_unchecked(const uint64_t[::1] codes, double[::1] out):
    cdef Py_ssize_t c, wide = 0, n = codes.shape[0]
    cdef int t = threads(n)
    if n == 0:
        return 0
    cdef const uint64_t* cp = &codes[0]
    cdef double* op = &out[0]
    cdef const double* tp = decoded_K()
    if t == 1:
        return decode_K_range(cp, op, tp, 0, n)
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="dynamic", num_threads=t):
        wide += decode_K_range(cp, op, tp, c * CHUNK, chunk_end(c, n))
    return wide

