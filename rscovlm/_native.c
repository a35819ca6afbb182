/* rscovlm._native: optional compiled kernels, built at install time when a C compiler is present.

Every function here has a numpy twin in the package and gives bitwise the same results (tests compare the two):

  poly_inter_pairs   rscovlm.geometry.iou: intersection areas of aligned quad pairs under the DOTA devkit rule
                     (same floating-point operations in the same order as the numpy and numba paths)
  parse_task1        rscovlm.dota.io: one Task1_{class}.txt file -> image ids, scores, quads
  parse_labeltxt     rscovlm.dota.io: labelTxt files -> quads, class indices, difficult flags
  ap_sweep_random    rscovlm.eval.ap_nc: AP_nc of one class for every score threshold (11-point / area AP)

Parsers accept only what is certainly well formed (printable ASCII, LF or CRLF line ends, plain decimal numbers)
and return None for anything else; the caller then reads the file with the careful per-line reader, which names
the bad line. Numbers are converted exactly (correctly rounded, as float() does): the usual fast path for at most
19 significant digits and a power of ten up to 1e22 (one correctly rounded IEEE operation on exact operands),
otherwise Python's own PyOS_string_to_double.

Build flags matter: the arithmetic must not be contracted into fused multiply-adds (-ffp-contract=off, set in
setup.py) and no fast-math. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NATIVE_API 2 /* bumped whenever a signature or a result changes: the loader refuses a stale build */

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#define EXACT_DOUBLE_OPS 0 /* x87 extended precision: the fast number path would round twice */
#else
#define EXACT_DOUBLE_OPS 1
#endif

/* ---- buffers ------------------------------------------------------------------------------------------------ */

static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->itemsize != itemsize || view->len % itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes, got %zd", name, itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* ---- polygon intersection (the devkit rule; see rscovlm/geometry/iou.py) ------------------------------------ */

static int clip(const double *px, const double *py, int n, double ax, double ay, double bx, double by,
                double *ox, double *oy)
{
    double ex = bx - ax, ey = by - ay;
    int m = 0;
    for (int i = 0; i < n; i++) {
        int j = i + 1 < n ? i + 1 : 0;
        double di = ex * (py[i] - ay) - ey * (px[i] - ax);
        double dj = ex * (py[j] - ay) - ey * (px[j] - ax);
        if (di >= 0) {
            ox[m] = px[i];
            oy[m] = py[i];
            m++;
        }
        if ((di >= 0) != (dj >= 0)) {
            double t = di / (di - dj);
            ox[m] = px[i] + t * (px[j] - px[i]);
            oy[m] = py[i] + t * (py[j] - py[i]);
            m++;
        }
    }
    return m;
}

static double ring_area(const double *px, const double *py, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        int j = i + 1 < n ? i + 1 : 0;
        s += px[i] * py[j] - px[j] * py[i];
    }
    return 0.5 * s;
}

static int negative(const double *q)
{
    double s = 0.0;
    for (int i = 0; i < 4; i++) {
        int j = (i + 1) % 4;
        s = s + (q[2 * i] * q[2 * j + 1] - q[2 * i + 1] * q[2 * j]);
    }
    return s < 0;
}

static void reverse4(double *x, double *y)
{
    double t = x[1];
    x[1] = x[3];
    x[3] = t;
    t = y[1];
    y[1] = y[3];
    y[3] = t;
}

static int strictly_convex(const double *x, const double *y)
{
    for (int i = 0; i < 4; i++) {
        int j = (i + 1) % 4, k = (i + 2) % 4;
        if ((x[j] - x[i]) * (y[k] - y[j]) - (y[j] - y[i]) * (x[k] - x[j]) <= 0)
            return 0;
    }
    return 1;
}

static double pyfmin(double a, double b) { return b < a ? b : a; } /* Python's min(a, b) */
static double pyfmax(double a, double b) { return b > a ? b : a; }

static double pair_intersection(const double *a, const double *b, double zero_rel)
{
    double px[4], py[4], qx[4], qy[4], ux[32], uy[32], vx[32], vy[32];
    double x0 = a[0], y0 = a[1];
    for (int i = 0; i < 4; i++) {
        x0 = pyfmin(pyfmin(x0, a[2 * i]), b[2 * i]);
        y0 = pyfmin(pyfmin(y0, a[2 * i + 1]), b[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        px[i] = a[2 * i] - x0;
        py[i] = a[2 * i + 1] - y0;
        qx[i] = b[2 * i] - x0;
        qy[i] = b[2 * i + 1] - y0;
    }
    double ext = 0.0;
    for (int i = 0; i < 4; i++)
        ext = pyfmax(pyfmax(pyfmax(pyfmax(ext, px[i]), py[i]), qx[i]), qy[i]);
    double tol = zero_rel * (ext * ext);
    if (negative(a))
        reverse4(px, py);
    if (negative(b))
        reverse4(qx, qy);
    if (strictly_convex(px, py) && strictly_convex(qx, qy)) {
        int n = 4;
        for (int i = 0; i < 4; i++) {
            ux[i] = px[i];
            uy[i] = py[i];
        }
        for (int j = 0; j < 4; j++) {
            int jn = (j + 1) % 4;
            n = clip(ux, uy, n, qx[j], qy[j], qx[jn], qy[jn], vx, vy);
            for (int i = 0; i < n; i++) {
                ux[i] = vx[i];
                uy[i] = vy[i];
            }
            if (n == 0)
                break;
        }
        double area = n > 2 ? fabs(ring_area(ux, uy, n)) : 0.0;
        return area > tol ? area : 0.0;
    }
    double total = 0.0;
    for (int i = 0; i < 4; i++) {
        int inn = (i + 1) % 4;
        double ax = px[i], ay = py[i], bx = px[inn], by = py[inn];
        double c1 = ax * by - ay * bx;
        if (c1 == 0)
            continue;
        if (c1 < 0) {
            double t;
            t = ax; ax = bx; bx = t;
            t = ay; ay = by; by = t;
        }
        for (int j = 0; j < 4; j++) {
            int jn = (j + 1) % 4;
            double cx = qx[j], cy = qy[j], dx = qx[jn], dy = qy[jn];
            double c2 = cx * dy - cy * dx;
            if (c2 == 0)
                continue;
            if (c2 < 0) {
                double t;
                t = cx; cx = dx; dx = t;
                t = cy; cy = dy; dy = t;
            }
            ux[0] = 0.0; uy[0] = 0.0;
            ux[1] = ax; uy[1] = ay;
            ux[2] = bx; uy[2] = by;
            int n = clip(ux, uy, 3, 0.0, 0.0, cx, cy, vx, vy);
            n = clip(vx, vy, n, cx, cy, dx, dy, ux, uy);
            n = clip(ux, uy, n, dx, dy, 0.0, 0.0, vx, vy);
            double area = n > 2 ? fabs(ring_area(vx, vy, n)) : 0.0;
            total += (c1 > 0) == (c2 > 0) ? area : -area;
        }
    }
    return fabs(total) > tol ? total : 0.0;
}

#define ZERO_REL 9.094947017729282e-13 /* 2**-40, rscovlm.geometry.iou._ZERO_REL */

static PyObject *poly_inter_pairs(PyObject *self, PyObject *args)
{
    PyObject *ao, *bo, *oo;
    double zero_rel;
    if (!PyArg_ParseTuple(args, "OOdO", &ao, &bo, &zero_rel, &oo))
        return NULL;
    Py_buffer a, b, out;
    if (get_buffer(ao, &a, 8, 0, "a") < 0)
        return NULL;
    if (get_buffer(bo, &b, 8, 0, "b") < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    if (get_buffer(oo, &out, 8, 1, "out") < 0) {
        PyBuffer_Release(&a);
        PyBuffer_Release(&b);
        return NULL;
    }
    Py_ssize_t k = out.len / 8;
    if (a.len != k * 64 || b.len != k * 64) {
        PyErr_SetString(PyExc_ValueError, "a and b need 8 values per output");
    } else {
        const double *pa = a.buf, *pb = b.buf;
        double *po = out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r = 0; r < k; r++)
            po[r] = pair_intersection(pa + 8 * r, pb + 8 * r, zero_rel);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyBuffer_Release(&out);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* ---- one class's candidate pairs, IoUs and best matches (rscovlm.eval.dota_map.class_overlaps) ---------- */

static double shoelace_abs(const double *q) /* twice the signed area, the devkit's order (poly_areas) */
{
    double s = 0.0;
    for (int i = 0; i < 4; i++) {
        int j = (i + 1) % 4;
        s = s + (q[2 * i] * q[2 * j + 1] - q[2 * i + 1] * q[2 * j]);
    }
    return s;
}

/* numpy.minimum / numpy.maximum: NaN when either is NaN */
static double npmin(double a, double b) { return (isnan(a) || isnan(b)) ? NAN : (b < a ? b : a); }
static double npmax(double a, double b) { return (isnan(a) || isnan(b)) ? NAN : (b > a ? b : a); }

static void hbb_of(const double *q, double *h)
{
    h[0] = npmin(npmin(q[0], q[2]), npmin(q[4], q[6]));
    h[1] = npmin(npmin(q[1], q[3]), npmin(q[5], q[7]));
    h[2] = npmax(npmax(q[0], q[2]), npmax(q[4], q[6]));
    h[3] = npmax(npmax(q[1], q[3]), npmax(q[5], q[7]));
}

typedef struct {
    int64_t *det, *gt;
    double *iou;
    Py_ssize_t n, cap;
} Pairs;

static int pairs_push(Pairs *p, int64_t i, int64_t j, double v)
{
    if (p->n == p->cap) {
        Py_ssize_t cap = p->cap ? 2 * p->cap : 4096;
        int64_t *d = PyMem_Realloc(p->det, (size_t)cap * 8), *g;
        if (d == NULL)
            return -1;
        p->det = d;
        g = PyMem_Realloc(p->gt, (size_t)cap * 8);
        if (g == NULL)
            return -1;
        p->gt = g;
        double *v2 = PyMem_Realloc(p->iou, (size_t)cap * 8);
        if (v2 == NULL)
            return -1;
        p->iou = v2;
        p->cap = cap;
    }
    p->det[p->n] = i;
    p->gt[p->n] = j;
    p->iou[p->n] = v;
    p->n++;
    return 0;
}

static PyObject *as_bytearray(const void *data, Py_ssize_t size)
{
    return PyByteArray_FromStringAndSize(size ? data : "", size);
}

/* class_overlaps(d_quads, d_image, g_quads, g_image, margin, float32)
   -> (pair_det, pair_gt, pair_iou, ovmax, jmax) as bytearrays (int64, int64, float64, float64, int64).
   Candidates: same image and enclosing boxes with min(x2) - max(x1) > -margin and the same in y, in (det, gt)
   index order. IoU = inter / (area_d + area_g - inter) (inter 0 unless the boxes overlap positively; IEEE
   division: 0/0 = NaN), rounded to float32 when asked. Best match per detection: highest IoU, NaN counted as
   -inf, first ground truth on ties; ovmax NaN when any candidate IoU is NaN; -inf / -1 without candidates. */
static PyObject *class_overlaps(PyObject *self, PyObject *args)
{
    PyObject *dqo, *dio, *gqo, *gio;
    double margin;
    int f32;
    if (!PyArg_ParseTuple(args, "OOOOdp", &dqo, &dio, &gqo, &gio, &margin, &f32))
        return NULL;
    Py_buffer dq, di, gq, gi;
    int got = 0;
    if (get_buffer(dqo, &dq, 8, 0, "d_quads") < 0)
        return NULL;
    got = 1;
    if (get_buffer(dio, &di, 8, 0, "d_image") < 0)
        goto release;
    got = 2;
    if (get_buffer(gqo, &gq, 8, 0, "g_quads") < 0)
        goto release;
    got = 3;
    if (get_buffer(gio, &gi, 8, 0, "g_image") < 0)
        goto release;
    got = 4;
    PyObject *result = NULL;
    Py_ssize_t n = di.len / 8, m = gi.len / 8;
    if (dq.len != n * 64 || gq.len != m * 64) {
        PyErr_SetString(PyExc_ValueError, "quads need 8 values per image index");
        goto release;
    }
    const double *dquad = dq.buf, *gquad = gq.buf;
    const int64_t *dimg = di.buf, *gimg = gi.buf;
    double *dh = PyMem_Malloc((size_t)(n + 1) * 4 * 8), *gh = PyMem_Malloc((size_t)(m + 1) * 4 * 8);
    double *da = PyMem_Malloc((size_t)(n + 1) * 8), *ga = PyMem_Malloc((size_t)(m + 1) * 8);
    double *ovmax = PyMem_Malloc((size_t)(n + 1) * 8);
    int64_t *jmax = PyMem_Malloc((size_t)(n + 1) * 8);
    int64_t max_img = -1;
    for (Py_ssize_t j = 0; j < m; j++)
        max_img = gimg[j] > max_img ? gimg[j] : max_img;
    int64_t *start = PyMem_Calloc((size_t)(max_img + 2), 8), *order = PyMem_Malloc((size_t)(m + 1) * 8);
    Pairs pairs = {NULL, NULL, NULL, 0, 0};
    if (!dh || !gh || !da || !ga || !ovmax || !jmax || !start || !order) {
        PyErr_NoMemory();
        goto cleanup;
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        if (gimg[j] < 0) {
            PyErr_SetString(PyExc_ValueError, "negative image index");
            goto cleanup;
        }
        hbb_of(gquad + 8 * j, gh + 4 * j);
        ga[j] = fabs(shoelace_abs(gquad + 8 * j) / 2.0);
        start[gimg[j] + 1]++;
    }
    for (int64_t g = 0; g <= max_img; g++)
        start[g + 1] += start[g];
    {
        int64_t *fill = PyMem_Malloc((size_t)(max_img + 2) * 8);
        if (fill == NULL) {
            PyErr_NoMemory();
            goto cleanup;
        }
        memcpy(fill, start, (size_t)(max_img + 2) * 8);
        for (Py_ssize_t j = 0; j < m; j++)
            order[fill[gimg[j]]++] = j; /* ground truths of each image, index order */
        PyMem_Free(fill);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *q = dquad + 8 * i;
        double *h = dh + 4 * i;
        hbb_of(q, h);
        da[i] = fabs(shoelace_abs(q) / 2.0);
        ovmax[i] = -INFINITY;
        jmax[i] = -1;
        int64_t img = dimg[i];
        if (img < 0 || img > max_img)
            continue;
        int has_nan = 0, any = 0;
        double best = 0.0;
        for (int64_t k = start[img]; k < start[img + 1]; k++) {
            int64_t j = order[k];
            const double *hg = gh + 4 * j;
            double x1 = npmax(h[0], hg[0]), x2 = npmin(h[2], hg[2]), y1 = npmax(h[1], hg[1]), y2 = npmin(h[3], hg[3]);
            if (!(x2 - x1 > -margin && y2 - y1 > -margin))
                continue;
            double inter = 0.0;
            if (x2 > x1 && y2 > y1)
                inter = pair_intersection(q, gquad + 8 * j, ZERO_REL);
            double iou = inter / (da[i] + ga[j] - inter);
            if (f32)
                iou = (double)(float)iou;
            if (pairs_push(&pairs, i, j, iou) < 0) {
                PyErr_NoMemory();
                goto cleanup;
            }
            double key = isnan(iou) ? -INFINITY : iou;
            has_nan |= isnan(iou) != 0;
            if (!any || key > best) {
                best = key;
                jmax[i] = j;
            }
            any = 1;
        }
        if (any)
            ovmax[i] = has_nan ? NAN : best;
    }
    result = Py_BuildValue("NNNNN", as_bytearray(pairs.det, pairs.n * 8), as_bytearray(pairs.gt, pairs.n * 8),
                           as_bytearray(pairs.iou, pairs.n * 8), as_bytearray(ovmax, n * 8),
                           as_bytearray(jmax, n * 8));
cleanup:
    PyMem_Free(dh);
    PyMem_Free(gh);
    PyMem_Free(da);
    PyMem_Free(ga);
    PyMem_Free(ovmax);
    PyMem_Free(jmax);
    PyMem_Free(start);
    PyMem_Free(order);
    PyMem_Free(pairs.det);
    PyMem_Free(pairs.gt);
    PyMem_Free(pairs.iou);
release:
    if (got >= 1)
        PyBuffer_Release(&dq);
    if (got >= 2)
        PyBuffer_Release(&di);
    if (got >= 3)
        PyBuffer_Release(&gq);
    if (got >= 4)
        PyBuffer_Release(&gi);
    return got == 4 ? result : NULL;
}

/* ---- AP_nc of one class over score thresholds (rscovlm.eval.ap_nc.ap_nc_grid) -------------------------- */

/* numpy's pairwise summation of a contiguous float64 row (np.sum along the last axis) */
static double pairwise_sum(const double *a, Py_ssize_t n)
{
    if (n < 8) {
        double res = 0.;
        for (Py_ssize_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        Py_ssize_t i;
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

/* ap_nc_curves(level, gt, qualified, ignored_gt, first_kept, eleven_m, num_gt, num_pos, area, float32, out)
   Detections in ranking (random) order: level (int64, dense score level), gt (int64, best ground truth),
   qualified (bool: best IoU passes the IoU threshold), ignored_gt (bool: that ground truth is ignored).
   For each score threshold t (first_kept[t]: lowest level kept) the detections with level >= first_kept[t] are
   matched greedily (a qualified detection is a TP when no earlier qualified one of its ground truth is kept,
   ignored when its ground truth is ignored, else an FP) and AP is written to out[t] exactly as
   rscovlm.eval.ap.average_precision computes it from the cumulative counts over all detections:
   11-point (eleven_m[j]: the least TP count whose recall reaches the j-th threshold) or area (numpy's pairwise
   sum of recall steps times the precision envelope), precision in float32 when asked. */
static PyObject *ap_nc_curves(PyObject *self, PyObject *args)
{
    PyObject *lo, *go, *qo, *io, *fo, *eo, *oo;
    Py_ssize_t num_gt, num_pos;
    int area, f32;
    if (!PyArg_ParseTuple(args, "OOOOOOnnppO", &lo, &go, &qo, &io, &fo, &eo, &num_gt, &num_pos, &area, &f32, &oo))
        return NULL;
    Py_buffer b[7];
    PyObject *objs[7] = {lo, go, qo, io, fo, eo, oo};
    const Py_ssize_t sizes[7] = {8, 8, 1, 1, 8, 8, 8};
    const char *names[7] = {"level", "gt", "qualified", "ignored_gt", "first_kept", "eleven_m", "out"};
    int got = 0;
    for (; got < 7; got++)
        if (get_buffer(objs[got], &b[got], sizes[got], got == 6, names[got]) < 0)
            break;
    PyObject *result = NULL;
    int64_t *maxlev = NULL, *blk = NULL;
    unsigned char *code = NULL;
    int64_t *kc = NULL, *tpc = NULL, *fpc = NULL;
    double *rec = NULL, *prec = NULL, *term = NULL, *ptab = NULL;
    if (got < 7)
        goto release;
    Py_ssize_t n = b[0].len / 8, T = b[4].len / 8;
    if (b[1].len != n * 8 || b[2].len != n || b[3].len != n || b[5].len != 11 * 8 || b[6].len != T * 8 ||
        num_pos <= 0) {
        PyErr_SetString(PyExc_ValueError, "ap_nc_curves: inconsistent arguments");
        goto release;
    }
    const int64_t *lv = b[0].buf, *jm = b[1].buf, *fk = b[4].buf, *em = b[5].buf;
    const unsigned char *q = b[2].buf, *ig = b[3].buf;
    double *out = b[6].buf;
    maxlev = PyMem_Malloc((size_t)(num_gt + 1) * 8);
    blk = PyMem_Malloc((size_t)(n + 1) * 8);
    code = PyMem_Malloc((size_t)(n + 1));
    if (area) {
        rec = PyMem_Malloc((size_t)(n + 1) * 8);
        prec = PyMem_Malloc((size_t)(n + 1) * 8);
        term = PyMem_Malloc((size_t)(n + 1) * 8);
    }
    if (!maxlev || !blk || !code || (area && (!rec || !prec || !term))) {
        PyErr_NoMemory();
        goto release;
    }
    /* blockers: the highest level among earlier candidates of the same ground truth (-1: none) */
    for (Py_ssize_t j = 0; j < num_gt; j++)
        maxlev[j] = -1;
    for (Py_ssize_t k = 0; k < n; k++) {
        blk[k] = -1;
        if (q[k] && !ig[k]) {
            if (jm[k] < 0 || jm[k] >= num_gt) {
                PyErr_SetString(PyExc_ValueError, "ap_nc_curves: ground-truth index out of range");
                goto release;
            }
            blk[k] = maxlev[jm[k]];
            if (lv[k] > maxlev[jm[k]])
                maxlev[jm[k]] = lv[k];
        }
    }
    const double npos = (double)num_pos;
    /* per detection: 0 = FP whenever kept, 1 = ignored, 2 = TP while its blocker is dropped (else FP) */
    for (Py_ssize_t k = 0; k < n; k++) {
        code[k] = q[k] ? (ig[k] ? 1 : 2) : 0;
        if (code[k] != 2)
            blk[k] = INT64_MAX;
    }
    if (!area) {
        /* one pass over the ranking for all thresholds (first_kept non-decreasing): detection k is kept for
           t < kc[level] and a TP for t >= kc[blocker] among those; its precision is recorded at each TP */
        for (Py_ssize_t t = 1; t < T; t++)
            if (fk[t] < fk[t - 1]) {
                PyErr_SetString(PyExc_ValueError, "ap_nc_curves: first_kept must be non-decreasing");
                goto release;
            }
        int64_t max_level = 0;
        for (Py_ssize_t k = 0; k < n; k++)
            if (lv[k] < 0) {
                PyErr_SetString(PyExc_ValueError, "ap_nc_curves: negative level");
                goto release;
            } else if (lv[k] > max_level) {
                max_level = lv[k];
            }
        kc = PyMem_Malloc((size_t)(max_level + 1) * 8);
        tpc = PyMem_Calloc((size_t)T + 1, 8);
        fpc = PyMem_Calloc((size_t)T + 1, 8);
        ptab = PyMem_Malloc(((size_t)T + 1) * ((size_t)num_pos + 1) * 8);
        if (!kc || !tpc || !fpc || !ptab) {
            PyErr_NoMemory();
            goto release;
        }
        for (int64_t l = 0, t = 0; l <= max_level; l++) {
            while (t < T && fk[t] <= l)
                t++;
            kc[l] = t;
        }
        for (Py_ssize_t k = 0; k < n; k++) {
            int64_t tk = kc[lv[k]], ub = tk;
            if (code[k] == 1)
                continue;
            if (code[k] == 2)
                ub = blk[k] < 0 ? 0 : kc[blk[k]];
            int64_t fp_end = ub < tk ? ub : tk;
            for (int64_t t = 0; t < fp_end; t++)
                fpc[t]++;
            for (int64_t t = ub; t < tk; t++) {
                int64_t tp = ++tpc[t];
                if (tp > num_pos) {
                    PyErr_SetString(PyExc_ValueError, "ap_nc_curves: more TPs than positives");
                    goto release;
                }
                double pr;
                if (f32) {
                    float t32 = (float)tp, s32 = t32 + (float)fpc[t];
                    pr = (double)(t32 / (s32 > FLT_EPSILON ? s32 : FLT_EPSILON));
                } else {
                    double s64 = (double)tp + (double)fpc[t];
                    pr = (double)tp / (s64 > DBL_EPSILON ? s64 : DBL_EPSILON);
                }
                ptab[t * (num_pos + 1) + tp] = pr;
            }
        }
        for (Py_ssize_t t = 0; t < T; t++) {
            /* p[j]: the best precision at a TP whose count reaches eleven_m[j] (0 when none does) */
            const double *ptp = ptab + t * (num_pos + 1);
            int64_t tp = tpc[t];
            double p[11], best = 0.0;
            int j = 10;
            for (; j >= 0 && (em[j] > 1 ? em[j] : 1) > tp; j--)
                p[j] = 0.0;
            for (int64_t m = tp; m >= 1 && j >= 0; m--) {
                if (ptp[m] > best)
                    best = ptp[m];
                for (; j >= 0 && (em[j] > 1 ? em[j] : 1) == m; j--)
                    p[j] = best;
            }
            if (f32) {
                float ap = 0.0f;
                for (j = 0; j < 11; j++)
                    ap += (float)p[j];
                ap /= 11.0f;
                out[t] = (double)ap;
            } else {
                double ap = 0.0;
                for (j = 0; j < 11; j++)
                    ap = ap + p[j] / 11.0;
                out[t] = ap;
            }
        }
    }
    for (Py_ssize_t t = 0; area && t < T; t++) {
        int64_t f = fk[t], tp = 0, fp = 0;
        if (t > 0 && fk[t - 1] == f) { /* same detections kept: same curve */
            out[t] = out[t - 1];
            continue;
        }
        {
            if (n == 0) {
                out[t] = 0.0;
                continue;
            }
            for (Py_ssize_t k = 0; k < n; k++) {
                if (lv[k] >= f) {
                    if (blk[k] < f)
                        tp++;
                    else
                        fp += code[k] != 1;
                }
                rec[k] = (double)tp / npos;
                if (f32) {
                    float t32 = (float)tp, s32 = t32 + (float)fp;
                    prec[k] = (double)(t32 / (s32 > FLT_EPSILON ? s32 : FLT_EPSILON));
                } else {
                    double s64 = (double)tp + (double)fp;
                    prec[k] = (double)tp / (s64 > DBL_EPSILON ? s64 : DBL_EPSILON);
                }
            }
            double env = prec[n - 1];
            for (Py_ssize_t k = n - 1; k >= 0; k--) {
                if (prec[k] > env)
                    env = prec[k];
                term[k] = (rec[k] - (k ? rec[k - 1] : 0.0)) * env;
            }
            double ap = pairwise_sum(term, n);
            out[t] = f32 ? (double)(float)ap : ap;
        }
    }
    result = Py_None;
    Py_INCREF(result);
release:
    PyMem_Free(maxlev);
    PyMem_Free(blk);
    PyMem_Free(code);
    PyMem_Free(kc);
    PyMem_Free(tpc);
    PyMem_Free(fpc);
    PyMem_Free(ptab);
    PyMem_Free(rec);
    PyMem_Free(prec);
    PyMem_Free(term);
    for (int i = 0; i < got; i++)
        PyBuffer_Release(&b[i]);
    return result;
}

/* ---- text: bytes, tokens, numbers ------------------------------------------------------------------------- */

/* byte classes: 0 = printable (a token byte), 1 = blank (space, tab), 2 = LF, 3 = CR, 4 = odd (any other byte:
   control, \v, \f, DEL, non-ASCII - str.split()/splitlines() could see other tokens or lines than we do) */
static unsigned char byte_class[256];

static void init_byte_class(void)
{
    for (int c = 0; c < 256; c++)
        byte_class[c] = (c > 32 && c < 127) ? 0 : 4;
    byte_class[' '] = 1;
    byte_class['\t'] = 1;
    byte_class['\n'] = 2;
    byte_class['\r'] = 3;
}

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A plain decimal number ([+-]digits[.digits][(e|E)[+-]digits], at least one digit) starting at *pp and ending
   at a blank (space, tab), a CR or `end` -> 1, its correctly rounded value (what float() gives) in *out and *pp
   moved past it; 0 for anything else or a value that is not finite. */
static int parse_number_at(const char **pp, const char *end, double *out)
{
    const char *s = *pp, *p = s;
    int neg = 0, any = 0, exact = 1, nd = 0;
    uint64_t w = 0;
    long e10 = 0;
    if (p < end && (*p == '+' || *p == '-')) {
        neg = *p == '-';
        p++;
    }
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        int d = *p - '0';
        any = 1;
        if (w == 0 && d == 0)
            continue;
        if (nd < 19) {
            w = w * 10 + (uint64_t)d;
            nd++;
        } else {
            exact = 0;
        }
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            int d = *p - '0';
            any = 1;
            if (w == 0 && d == 0) {
                e10--;
            } else if (nd < 19) {
                w = w * 10 + (uint64_t)d;
                nd++;
                e10--;
            } else {
                exact = 0;
            }
        }
    }
    if (!any)
        return 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0;
        long ev = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= end || *p < '0' || *p > '9')
            return 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            if (ev < 100000)
                ev = ev * 10 + (*p - '0');
        e10 += eneg ? -ev : ev;
    }
    if (p < end && *p != ' ' && *p != '\t' && *p != '\r')
        return 0;
    *pp = p;
    Py_ssize_t len = p - s;
    if (w == 0 && exact) {
        *out = neg ? -0.0 : 0.0;
        return 1;
    }
    if (EXACT_DOUBLE_OPS && exact && w <= ((uint64_t)1 << 53) && e10 >= -22 && e10 <= 22) {
        double v = (double)w;
        v = e10 < 0 ? v / POW10[-e10] : v * POW10[e10];
        *out = neg ? -v : v;
        return 1;
    }
#ifdef __SIZEOF_INT128__
    /* up to 19 digits over a power of ten (17-digit scores such as repr() writes): the quotient rounded twice is
       the correctly rounded value or next to it; keep it when exact integer arithmetic proves it within half an
       ulp of w / 10^k (no tie), else ask Python */
    if (EXACT_DOUBLE_OPS && exact && e10 < 0 && e10 >= -22) {
        int k = (int)-e10, e2;
        double v = (double)w / POW10[k];
        double mant = frexp(v, &e2); /* v = mant * 2^e2, mant in [0.5, 1) */
        int s2 = 53 - e2;           /* v = M / 2^s2 with M = mant * 2^53 */
        int wbits = 64 - __builtin_clzll(w);
        if (v > 0 && s2 > 0 && s2 + wbits <= 127) {
            unsigned __int128 lhs = (unsigned __int128)w << s2;
            unsigned __int128 M = (unsigned __int128)(uint64_t)ldexp(mant, 53);
            unsigned __int128 p10 = 1;
            for (int i = 0; i < k; i++)
                p10 *= 10;
            unsigned __int128 rhs = M * p10, diff = lhs > rhs ? lhs - rhs : rhs - lhs;
            /* below a power of two the next value down is half an ulp away: a quarter ulp is the bound there */
            int below_binade = lhs < rhs && M == ((unsigned __int128)1 << 52);
            if (diff < p10 && (below_binade ? 4 * diff < p10 : 2 * diff < p10)) {
                *out = neg ? -v : v;
                return 1;
            }
        }
    }
#endif
    char small[64];
    char *buf = len < (Py_ssize_t)sizeof small ? small : PyMem_Malloc((size_t)len + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, s, (size_t)len);
    buf[len] = 0;
    char *stop = NULL;
    double v = PyOS_string_to_double(buf, &stop, NULL);
    int ok = !(v == -1.0 && PyErr_Occurred()) && stop == buf + len && isfinite(v);
    if (PyErr_Occurred())
        PyErr_Clear();
    if (buf != small)
        PyMem_Free(buf);
    if (!ok)
        return 0;
    *out = v;
    return 1;
}

/* parse_number_at on exactly the token [s, s + len) */
static int parse_number(const char *s, Py_ssize_t len, double *out)
{
    const char *p = s;
    return parse_number_at(&p, s + len, out) && p == s + len;
}

/* Split one line [p, end) (no LF inside; a CR only right before the LF, which the caller checked) into at most
   max_tok tokens; returns the number of tokens (max_tok + 1 when there are more). */
static int split_line(const char *p, const char *end, const char **tok, Py_ssize_t *tlen, int max_tok)
{
    int n = 0;
    while (p < end) {
        while (p < end && byte_class[(unsigned char)*p] != 0)
            p++;
        if (p >= end)
            break;
        const char *q = p;
        while (q < end && byte_class[(unsigned char)*q] == 0)
            q++;
        if (n >= max_tok)
            return max_tok + 1;
        tok[n] = p;
        tlen[n] = q - p;
        n++;
        p = q;
    }
    return n;
}

/* A buffer the fast readers can take: printable ASCII, blanks, LF, and CR only right before an LF. */
static int plain_text(const char *s, Py_ssize_t len)
{
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned char c = byte_class[(unsigned char)s[i]];
        if (c == 4)
            return 0;
        if (c == 3 && (i + 1 >= len || s[i + 1] != '\n'))
            return 0;
    }
    return 1;
}

/* ---- a small hash table of byte strings (image ids, class names) -> first-seen index ---------------------- */

typedef struct {
    const char *s;
    Py_ssize_t len;
    Py_ssize_t index;
} Slot;

typedef struct {
    Slot *slots;
    Py_ssize_t cap, count;
} Table;

static uint64_t hash_bytes(const char *s, Py_ssize_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static int table_init(Table *t)
{
    t->cap = 1024;
    t->count = 0;
    t->slots = PyMem_Calloc((size_t)t->cap, sizeof(Slot));
    return t->slots ? 0 : -1;
}

static void table_free(Table *t) { PyMem_Free(t->slots); }

/* index of s, inserting it (next index) when new; -1 on memory error */
static Py_ssize_t table_get(Table *t, const char *s, Py_ssize_t len)
{
    if (2 * (t->count + 1) > t->cap) {
        Table bigger = {PyMem_Calloc((size_t)t->cap * 2, sizeof(Slot)), t->cap * 2, t->count};
        if (bigger.slots == NULL)
            return -1;
        for (Py_ssize_t i = 0; i < t->cap; i++) {
            if (t->slots[i].s == NULL)
                continue;
            uint64_t h = hash_bytes(t->slots[i].s, t->slots[i].len) & (uint64_t)(bigger.cap - 1);
            while (bigger.slots[h].s != NULL)
                h = (h + 1) & (uint64_t)(bigger.cap - 1);
            bigger.slots[h] = t->slots[i];
        }
        PyMem_Free(t->slots);
        *t = bigger;
    }
    uint64_t h = hash_bytes(s, len) & (uint64_t)(t->cap - 1);
    while (t->slots[h].s != NULL) {
        if (t->slots[h].len == len && memcmp(t->slots[h].s, s, (size_t)len) == 0)
            return t->slots[h].index;
        h = (h + 1) & (uint64_t)(t->cap - 1);
    }
    t->slots[h].s = s;
    t->slots[h].len = len;
    t->slots[h].index = t->count;
    return t->count++;
}

/* the keys in index order, as a list of str */
static PyObject *table_keys(Table *t)
{
    PyObject *list = PyList_New(t->count);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < t->cap; i++) {
        if (t->slots[i].s == NULL)
            continue;
        PyObject *u = PyUnicode_DecodeASCII(t->slots[i].s, t->slots[i].len, NULL);
        if (u == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, t->slots[i].index, u);
    }
    return list;
}

/* ---- Task1 ---------------------------------------------------------------------------------------------- */

/* parse_task1(data) -> (n, ids, values, inverse, line_no) or None.
   data: the file's bytes (byte-order mark removed); every non-blank line must be `image_id score x1 y1 ... x4 y4`
   (printable ASCII, blanks between fields, LF or CRLF line ends). Returns bytearrays: values (n x 9 float64), the
   index of each detection's image id in ids (int64; ids in order of first appearance) and its 1-based line
   number (int64). One pass over the bytes: tokens are cut and numbers converted as they are met. */
static PyObject *parse_task1(PyObject *self, PyObject *args)
{
    PyObject *datao;
    if (!PyArg_ParseTuple(args, "O", &datao))
        return NULL;
    Py_buffer data;
    if (get_buffer(datao, &data, 1, 0, "data") < 0)
        return NULL;
    PyObject *result = NULL, *vals_b = NULL, *inv_b = NULL, *lines_b = NULL;
    Table ids;
    ids.slots = NULL;
    const char *s = data.buf, *end = s + data.len;
    Py_ssize_t cap = 1;
    for (const char *q = s; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++)
        cap++;
    vals_b = PyByteArray_FromStringAndSize(NULL, cap * 72);
    inv_b = PyByteArray_FromStringAndSize(NULL, cap * 8);
    lines_b = PyByteArray_FromStringAndSize(NULL, cap * 8);
    if (!vals_b || !inv_b || !lines_b || table_init(&ids) < 0) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    double *vals = (double *)PyByteArray_AS_STRING(vals_b);
    int64_t *index = (int64_t *)PyByteArray_AS_STRING(inv_b), *line_no = (int64_t *)PyByteArray_AS_STRING(lines_b);
    Py_ssize_t n = 0;
    int64_t line = 0;
    int ok = 1;
    while (s < end) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        const char *le = eol ? eol : end;
        if (eol && le > s && le[-1] == '\r')
            le--; /* CRLF; any other CR stops the scan below */
        line++;
        const char *p = s;
        while (p < le && (*p == ' ' || *p == '\t'))
            p++;
        if (p < le) {
            const char *id = p;
            while (p < le && byte_class[(unsigned char)*p] == 0)
                p++;
            Py_ssize_t idlen = p - id;
            double *row = vals + 9 * n;
            for (int f = 0; f < 9 && ok; f++) {
                const char *q = p;
                while (p < le && (*p == ' ' || *p == '\t'))
                    p++;
                ok = p > q && p < le && parse_number_at(&p, le, row + f);
            }
            while (ok && p < le && (*p == ' ' || *p == '\t'))
                p++;
            if (!ok || p != le)
                break;
            Py_ssize_t k = table_get(&ids, id, idlen);
            if (k < 0) {
                PyErr_NoMemory();
                goto done;
            }
            index[n] = k;
            line_no[n++] = line;
        }
        s = eol ? eol + 1 : end;
    }
    if (s < end || !ok) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    PyObject *keys = table_keys(&ids);
    if (keys == NULL || PyByteArray_Resize(vals_b, n * 72) < 0 || PyByteArray_Resize(inv_b, n * 8) < 0 ||
        PyByteArray_Resize(lines_b, n * 8) < 0) {
        Py_XDECREF(keys);
        goto done;
    }
    result = Py_BuildValue("nNOOO", n, keys, vals_b, inv_b, lines_b);
done:
    Py_XDECREF(vals_b);
    Py_XDECREF(inv_b);
    Py_XDECREF(lines_b);
    if (ids.slots)
        table_free(&ids);
    PyBuffer_Release(&data);
    return result;
}

/* ---- labelTxt ------------------------------------------------------------------------------------------- */

static int ascii_lower_equals(const char *s, Py_ssize_t len, const char *word)
{
    Py_ssize_t wl = (Py_ssize_t)strlen(word);
    if (len != wl)
        return 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != word[i])
            return 0;
    }
    return 1;
}

/* parse_labeltxt(files, quads, image, difficult, label) -> (n, class_names, headers) or None.
   files: list of bytes (one labelTxt file each, byte-order mark removed). Object lines `x1 y1 ... x4 y4 class
   [difficult]` (difficult 0, 1 or 2; absent = 0); lines of 1-8 fields must be headers `imagesource:...` or
   `gsd:...` (key case-insensitive), returned as (file index, key lower-cased, value stripped) for the caller to
   check. Output buffers (at least one row per line): quads float64 x 8, image int64 (file index), difficult
   int64, label int64 (index into class_names, in order of first appearance). */
static PyObject *parse_labeltxt(PyObject *self, PyObject *args)
{
    PyObject *files, *qo, *io, *doo, *lo;
    if (!PyArg_ParseTuple(args, "O!OOOO", &PyList_Type, &files, &qo, &io, &doo, &lo))
        return NULL;
    Py_buffer qb, ib, db, lb;
    if (get_buffer(qo, &qb, 8, 1, "quads") < 0)
        return NULL;
    if (get_buffer(io, &ib, 8, 1, "image") < 0) {
        PyBuffer_Release(&qb);
        return NULL;
    }
    if (get_buffer(doo, &db, 8, 1, "difficult") < 0) {
        PyBuffer_Release(&qb);
        PyBuffer_Release(&ib);
        return NULL;
    }
    if (get_buffer(lo, &lb, 8, 1, "label") < 0) {
        PyBuffer_Release(&qb);
        PyBuffer_Release(&ib);
        PyBuffer_Release(&db);
        return NULL;
    }
    PyObject *result = NULL, *headers = PyList_New(0);
    Table classes;
    classes.slots = NULL;
    if (headers == NULL)
        goto done;
    if (table_init(&classes) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    double *quads = qb.buf;
    int64_t *image = ib.buf, *diff = db.buf, *label = lb.buf;
    Py_ssize_t cap = ib.len / 8, n = 0, nfiles = PyList_GET_SIZE(files);
    if (qb.len < cap * 64 || db.len < cap * 8 || lb.len < cap * 8) {
        PyErr_SetString(PyExc_ValueError, "output buffers of different lengths");
        goto done;
    }
    int ok = 1;
    for (Py_ssize_t f = 0; f < nfiles && ok; f++) {
        PyObject *item = PyList_GET_ITEM(files, f);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "files must be a list of bytes");
            goto done;
        }
        const char *s = PyBytes_AS_STRING(item), *end = s + PyBytes_GET_SIZE(item);
        if (!plain_text(s, end - s)) {
            ok = 0;
            break;
        }
        while (s < end) {
            const char *eol = memchr(s, '\n', (size_t)(end - s));
            const char *line_end = eol ? eol : end;
            const char *tok[11];
            Py_ssize_t tlen[11];
            int nt = split_line(s, line_end, tok, tlen, 10);
            if (nt >= 9 && nt <= 10) {
                if (n >= cap) {
                    ok = 0;
                    break;
                }
                for (int k = 0; k < 8 && ok; k++)
                    ok = parse_number(tok[k], tlen[k], quads + 8 * n + k);
                if (!ok)
                    break;
                int64_t d = 0;
                if (nt == 10) {
                    if (tlen[9] != 1 || tok[9][0] < '0' || tok[9][0] > '2') {
                        ok = 0;
                        break;
                    }
                    d = tok[9][0] - '0';
                }
                Py_ssize_t c = table_get(&classes, tok[8], tlen[8]);
                if (c < 0) {
                    PyErr_NoMemory();
                    goto done;
                }
                image[n] = f;
                diff[n] = d;
                label[n] = c;
                n++;
            } else if (nt > 0 && nt < 9) {
                /* a header line: the stripped text, key before the first ':' */
                const char *a = tok[0], *b = tok[nt - 1] + tlen[nt - 1];
                const char *colon = memchr(a, ':', (size_t)(b - a));
                if (colon == NULL) {
                    ok = 0;
                    break;
                }
                const char *k0 = a, *k1 = colon;
                while (k1 > k0 && byte_class[(unsigned char)k1[-1]] != 0)
                    k1--;
                const char *key = ascii_lower_equals(k0, k1 - k0, "imagesource") ? "imagesource"
                                  : ascii_lower_equals(k0, k1 - k0, "gsd")       ? "gsd"
                                                                                   : NULL;
                if (key == NULL) {
                    ok = 0;
                    break;
                }
                const char *v0 = colon + 1;
                while (v0 < b && byte_class[(unsigned char)*v0] != 0)
                    v0++;
                PyObject *entry = Py_BuildValue("(nsN)", f, key, PyUnicode_DecodeASCII(v0, b - v0, NULL));
                if (entry == NULL || PyList_Append(headers, entry) < 0) {
                    Py_XDECREF(entry);
                    goto done;
                }
                Py_DECREF(entry);
            } else if (nt > 10) {
                ok = 0;
                break;
            }
            s = eol ? eol + 1 : end;
        }
    }
    if (!ok) {
        result = Py_None;
        Py_INCREF(result);
    } else {
        PyObject *names = table_keys(&classes);
        if (names != NULL) {
            result = Py_BuildValue("nNO", n, names, headers);
        }
    }
done:
    Py_XDECREF(headers);
    if (classes.slots)
        table_free(&classes);
    PyBuffer_Release(&qb);
    PyBuffer_Release(&ib);
    PyBuffer_Release(&db);
    PyBuffer_Release(&lb);
    return result;
}

/* ---- module ----------------------------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"poly_inter_pairs", poly_inter_pairs, METH_VARARGS,
     "poly_inter_pairs(a, b, zero_rel, out): intersection areas of aligned (K, 8) float64 quads into out (K,)"},
    {"class_overlaps", class_overlaps, METH_VARARGS,
     "class_overlaps(d_quads, d_image, g_quads, g_image, margin, float32) -> (pair_det, pair_gt, pair_iou, ovmax, "
     "jmax) as bytearrays (see rscovlm.eval.dota_map.class_overlaps)"},
    {"ap_nc_curves", ap_nc_curves, METH_VARARGS,
     "ap_nc_curves(level, gt, qualified, ignored_gt, first_kept, eleven_m, num_gt, num_pos, area, float32, out): "
     "AP of one class and ranking for every score threshold (see rscovlm.eval.ap_nc)"},
    {"parse_task1", parse_task1, METH_VARARGS,
     "parse_task1(data) -> (n, ids, values, inverse, line_no) or None (see rscovlm.dota.io)"},
    {"parse_labeltxt", parse_labeltxt, METH_VARARGS,
     "parse_labeltxt(files, quads, image, difficult, label) -> (n, class_names, headers) or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "rscovlm._native",
                                       "Optional compiled kernels of rscovlm (see rscovlm/_native.c).", -1,
                                       methods};

PyMODINIT_FUNC PyInit__native(void)
{
    init_byte_class();
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "API", NATIVE_API) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
