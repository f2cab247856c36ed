/* attention.c: flashcl from C on the caller's own OpenCL objects. Takes the first device of the
 * first platform, makes a context, queue and buffers, fills fcl_forward_args (after
 * fcl_forward_args_init), enqueues one call and checks the output against a plain softmax(QKᵀ/√d)·V.
 * Exit status 0 when they agree. */
#include <flashcl/flashcl.h>

#include <math.h>
#include <stdio.h>

enum { SEQ = 16, HEADS = 2, DIM = 8, N = SEQ * HEADS * DIM };

static int check(cl_int err, const char* what) {
  if (err != CL_SUCCESS) fprintf(stderr, "%s failed: %d\n", what, (int)err);
  return err != CL_SUCCESS;
}

int main(void) {
  float q[N], k[N], v[N], o[N];
  cl_platform_id platform;
  cl_device_id device;
  cl_int err;
  cl_event done = NULL;
  double worst = 0;
  int i, h, j, c, failed = 1;
  for (i = 0; i < N; ++i) {
    q[i] = sinf(0.37f * i);
    k[i] = cosf(0.11f * i);
    v[i] = sinf(0.05f * i + 1.0f);
  }
  if (check(clGetPlatformIDs(1, &platform, NULL), "clGetPlatformIDs") ||
      check(clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, NULL), "clGetDeviceIDs"))
    return 1;
  cl_context context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
  if (check(err, "clCreateContext")) return 1;
  cl_command_queue queue = clCreateCommandQueueWithProperties(context, device, NULL, &err);
  if (check(err, "clCreateCommandQueueWithProperties")) return 1;
  cl_mem bq = clCreateBuffer(context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof q, q, &err);
  cl_mem bk = clCreateBuffer(context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof k, k, &err);
  cl_mem bv = clCreateBuffer(context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof v, v, &err);
  cl_mem bo = clCreateBuffer(context, CL_MEM_WRITE_ONLY, sizeof o, NULL, &err);

  fcl_forward_args args;
  fcl_forward_args_init(&args); /* defaults first: fp32, auto algorithm, no window, no mask */
  args.batch = 1;
  args.heads = HEADS;
  args.seqlen_q = args.seqlen_k = SEQ;
  args.head_dim = DIM;
  args.q.buffer = bq; /* strides 0: dense (B, S, H, d) */
  args.k.buffer = bk;
  args.v.buffer = bv;
  args.o.buffer = bo;
  if (fcl_forward(queue, &args, 0, NULL, &done) != FCL_SUCCESS) {
    fprintf(stderr, "fcl_forward: %s\n", fcl_last_error());
  } else if (!check(clEnqueueReadBuffer(queue, bo, CL_TRUE, 0, sizeof o, o, 1, &done, NULL), "read")) {
    for (h = 0; h < HEADS; ++h)
      for (i = 0; i < SEQ; ++i) {
        double p[SEQ], top = -INFINITY, sum = 0;
        for (j = 0; j < SEQ; ++j) {
          double s = 0;
          for (c = 0; c < DIM; ++c) s += (double)q[(i * HEADS + h) * DIM + c] * k[(j * HEADS + h) * DIM + c];
          p[j] = s / sqrt((double)DIM);
          if (p[j] > top) top = p[j];
        }
        for (j = 0; j < SEQ; ++j) sum += p[j] = exp(p[j] - top);
        for (c = 0; c < DIM; ++c) {
          double out = 0;
          for (j = 0; j < SEQ; ++j) out += p[j] / sum * v[(j * HEADS + h) * DIM + c];
          if (fabs(out - o[(i * HEADS + h) * DIM + c]) > worst) worst = fabs(out - o[(i * HEADS + h) * DIM + c]);
        }
      }
    printf("flashcl %s (headers %d.%d.%d), C API: max |O - reference| = %.2g\n", fcl_version(),
           FLASHCL_VERSION_MAJOR, FLASHCL_VERSION_MINOR, FLASHCL_VERSION_PATCH, worst);
    failed = worst >= 1e-4;
  }
  if (done) clReleaseEvent(done);
  clReleaseMemObject(bq);
  clReleaseMemObject(bk);
  clReleaseMemObject(bv);
  clReleaseMemObject(bo);
  clReleaseCommandQueue(queue);
  clReleaseContext(context);
  return failed;
}
