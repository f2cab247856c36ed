// attention.cpp: the smallest C++ use of flashcl. A Session picks a device (FLASHCL_PLATFORM /
// FLASHCL_DEVICE, else the first GPU, else the first device), runs one causal attention call on
// host arrays and compares O with a plain softmax(QKᵀ/√d)·V computed here. Exit status 0 when
// they agree.
#include <flashcl/flashcl.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const int batch = 1, heads = 2, seqlen = 16, head_dim = 8;
  const std::size_t n = static_cast<std::size_t>(batch) * seqlen * heads * head_dim;
  std::vector<float> q(n), k(n), v(n);
  for (std::size_t i = 0; i < n; ++i) {  // fixed, varied inputs without a random generator
    q[i] = std::sin(0.37f * i);
    k[i] = std::cos(0.11f * i);
    v[i] = std::sin(0.05f * i + 1.0f);
  }
  try {
    flashcl::Session session;
    flashcl::ForwardArgs shape;
    shape.batch = batch;
    shape.heads = heads;
    shape.seqlen_q = shape.seqlen_k = seqlen;
    shape.head_dim = head_dim;
    shape.causal = true;
    const std::vector<float> o = session.forward(shape, q, k, v);

    // Reference, layout (B, S, H, d): element (s, h, i) at (s * heads + h) * head_dim + i.
    double worst = 0;
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < seqlen; ++i) {
        std::vector<double> p(i + 1);
        double top = -INFINITY, sum = 0;
        for (int j = 0; j <= i; ++j) {
          double s = 0;
          for (int c = 0; c < head_dim; ++c)
            s += q[(i * heads + h) * head_dim + c] * k[(j * heads + h) * head_dim + c];
          p[j] = s / std::sqrt(static_cast<double>(head_dim));
          top = std::max(top, p[j]);
        }
        for (double& x : p) sum += x = std::exp(x - top);
        for (int c = 0; c < head_dim; ++c) {
          double out = 0;
          for (int j = 0; j <= i; ++j) out += p[j] / sum * v[(j * heads + h) * head_dim + c];
          worst = std::max(worst, std::fabs(out - o[(i * heads + h) * head_dim + c]));
        }
      }
    std::printf("flashcl %s (headers %d.%d.%d) on %s: max |O - reference| = %.2g\n", flashcl::version(),
                FLASHCL_VERSION_MAJOR, FLASHCL_VERSION_MINOR, FLASHCL_VERSION_PATCH, session.info().name.c_str(),
                worst);
    return worst < 1e-4 ? 0 : 1;
  } catch (const flashcl::Error& e) {
    std::fprintf(stderr, "flashcl error %d: %s\n", static_cast<int>(e.status()), e.what());
    return 1;
  }
}
