# [K] fp64: float, 11 exponent and 52 fraction bits, bias 1023, max 1.7976931348623157e+308, subnormals, Inf, 4503599627370495 high NaN codes, overflow to Inf/NaN
cdef inline double q_K(double v, int mode, uint64_t sr, int srn) noexcept nogil:
    return float_round(v, 53, 1023, 1, 1, 1,
                       1, 1, 0, 1.7976931348623157e+308, mode, sr, srn)


cdef inline double qp_K(int neg, int E, uint64_t sig, int sticky, int mode, uint64_t sr,
                                    int srn) noexcept nogil:
    return float_from_parts(neg, E, sig, sticky, 53, 1023, 1, 1,
                            1, 1, 1, 0, 1.7976931348623157e+308,
                            mode, sr, srn)


cdef inline uint64_t enc_K(double r) noexcept nogil:
    return float_encode(r, 64, 52, 1023, 1, 1, 1,
                        1, 0xffffffffffffffffULL, 0x7ff0000000000000ULL, 0xfff0000000000000ULL,
                        0x7fefffffffffffffULL, 0xffefffffffffffffULL, 1.7976931348623157e+308, 5e-324)


cdef inline double dec_K(uint64_t c) noexcept nogil:
    return float_decode(c, 64, 52, 11, 1023, 1, 1,
                        1, 1, 1, 4503599627370495)


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
    if mode == STOCHASTIC:
        for i in range(lo, hi):
            out[i] = q_K(x[i], mode, rbits[i], srn)
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


def encode_K(x, out):
    """Codes (uint64 out, x's length) of float64 x rounded to nearest-even. Checked here."""
    x, out = checked_pair("encode_K", x, out, np.float64, np.uint64)
    encode_K_unchecked(x, out)


cdef void encode_K_range(const double* x, uint64_t* out, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(lo, hi):
        out[i] = enc_K(q_K(x[i], RNE, 0, 0))


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
    than the format's 64 bits (their values are not meaningful). Checked here."""
    codes, out = checked_pair("decode_K", codes, out, np.uint64, np.float64, "codes")
    return decode_K_unchecked(codes, out)


cdef Py_ssize_t decode_K_range(const uint64_t* codes, double* out, const double* table, Py_ssize_t lo,
                                           Py_ssize_t hi) noexcept nogil:
    """Values; returns the number of codes wider than the format."""
    cdef Py_ssize_t i, wide = 0
    for i in range(lo, hi):
        out[i] = dec_K(codes[i])
    return wide


cdef Py_ssize_t decode_K_unchecked(const uint64_t[::1] codes, double[::1] out):
    cdef Py_ssize_t c, wide = 0, n = codes.shape[0]
    cdef int t = threads(n)
    if n == 0:
        return 0
    cdef const uint64_t* cp = &codes[0]
    cdef double* op = &out[0]
    cdef const double* tp = NULL
    if t == 1:
        return decode_K_range(cp, op, tp, 0, n)
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="dynamic", num_threads=t):
        wide += decode_K_range(cp, op, tp, c * CHUNK, chunk_end(c, n))
    return wide

