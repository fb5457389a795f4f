/*
 * Skip-gram with negative sampling over one block of token ids, as word2vec.c trains it:
 * one (context, centre) pair at a time, plain SGD, Hogwild threads without locks.
 *
 * Built and loaded by w2vdist/kernels/cpu.py, which documents the semantics and checks every
 * argument; this file trusts its inputs. No OpenMP runtime: plain pthreads, so that loading it
 * never brings a second OpenMP runtime into a process that already has torch's.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

enum { W2V_OK = 0, W2V_ENOMEM = 1 };

#define CHUNK 32 /* centre words whose random draws are made before any of their pairs train */
#define AHEAD 2  /* pairs between fetching a pair's rows and training it */
#define LOSS_FOLD 512 /* factors (1 + e) <= 2 multiplied before one log: far below DBL_MAX */

/* Dot product. GCC adds up the lanes of a vectorised reduction one at a time, which costs more
 * than the products at word2vec sizes, so x86 gets explicit vectors and a tree sum. */
#if defined(__AVX512F__)
#include <immintrin.h>
static inline float dot(const float *a, const float *b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 32 <= n; c += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + c + 16), _mm512_loadu_ps(b + c + 16), s1);
  }
  for (; c < n; c += 16) {
    const __mmask16 m = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + c), _mm512_maskz_loadu_ps(m, b + c), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static inline float dot(const float *a, const float *b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c + 8), _mm256_loadu_ps(b + c + 8), s1);
  }
  for (; c + 8 <= n; c += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), s0);
  const __m256 s = _mm256_add_ps(s0, s1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float f = _mm_cvtss_f32(h);
  for (; c < n; c++) f += a[c] * b[c];
  return f;
}
#else
static inline float dot(const float *a, const float *b, int64_t n) {
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
  int64_t c = 0;
  for (; c + 4 <= n; c += 4) {
    s0 += a[c] * b[c];
    s1 += a[c + 1] * b[c + 1];
    s2 += a[c + 2] * b[c + 2];
    s3 += a[c + 3] * b[c + 3];
  }
  for (; c < n; c++) s0 += a[c] * b[c];
  return (s0 + s1) + (s2 + s3);
}
#endif

static inline uint64_t lcg(uint64_t r) { return r * 25214903917ULL + 11ULL; }

/* Uniform integer in [0, n) from the 32 high bits of r (the LCG's low bits are weak). */
static inline uint64_t below(uint64_t r, uint64_t n) { return ((r >> 32) * n) >> 32; }

/* A negative from the alias table: slot i = below(r, V), kept with probability
 * threshold_i / 2^31 tested on the next 31 bits of the same product, else its alias. */
static inline int32_t draw_negative(const int32_t *table, uint64_t vocab, uint64_t r) {
  const uint64_t x = (r >> 32) * vocab;
  const uint64_t i = x >> 32;
  return (int32_t)((uint32_t)x >> 1) < table[2 * i] ? (int32_t)i : table[2 * i + 1];
}

static uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* Vose's alias method: each of n slots keeps itself with threshold / 2^31, else its alias, so
 * that word i is drawn with probability weights[i] / sum(weights). table is int32[n][2]. */
int w2v_alias_table(const double *weights, int64_t n, int32_t *table) {
  double *q = malloc(sizeof(double) * n);
  int64_t *small = malloc(sizeof(int64_t) * n), *large = malloc(sizeof(int64_t) * n);
  int err = W2V_OK;
  if (!q || !small || !large) {
    err = W2V_ENOMEM;
    goto done;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) sum += weights[i];
  int64_t ns = 0, nl = 0;
  for (int64_t i = 0; i < n; i++) {
    q[i] = weights[i] * (double)n / sum;
    if (q[i] < 1.0) small[ns++] = i; else large[nl++] = i;
  }
  while (ns > 0 && nl > 0) {
    const int64_t s = small[--ns], l = large[nl - 1];
    table[2 * s] = (int32_t)fmin(q[s] * 2147483648.0, 2147483647.0);
    table[2 * s + 1] = (int32_t)l;
    q[l] -= 1.0 - q[s];
    if (q[l] < 1.0) {
      nl--;
      small[ns++] = l;
    }
  }
  /* What is left is full up to rounding: it keeps itself. */
  while (nl > 0) small[ns++] = large[--nl];
  while (ns > 0) {
    const int64_t s = small[--ns];
    table[2 * s] = 2147483647;
    table[2 * s + 1] = (int32_t)s;
  }
done:
  free(q);
  free(small);
  free(large);
  return err;
}

typedef struct {
  const int32_t *tokens;
  const int64_t *starts; /* n_sentences + 1 sentence start offsets */
  int64_t n_sentences;
  float *w_in, *w_out;
  int64_t vocab, dim;
  const float *keep_prob;
  const int32_t *table;
  int window, negative;
  float alpha_start, alpha_end;
} Shared;

typedef struct {
  const Shared *s;
  int64_t begin, end; /* token range of this thread */
  uint64_t rng;
  double loss;
  int64_t pairs, kept;
  int err;
  char pad[64]; /* threads write their results at the end only, but keep them apart anyway */
} Job;

/* A chunk of training pairs whose random draws are all made before any of them trains, so that
 * the rows of pair k + AHEAD are on their way from memory while pair k trains. */
typedef struct {
  int32_t *context; /* per pair: the input row */
  int32_t *count;   /* per pair: how many targets */
  int32_t *targets; /* per pair, negative + 1 slots: the centre word, then the negatives kept */
  float *alpha;
  int64_t n;
} Pairs;

typedef struct {
  double positive_part; /* sum of max(x, 0) of -log sig(-x) = max(x, 0) + log1p(exp(-|x|)) */
  double logs;          /* sum of logs of folded products */
  double product;       /* product of (1 + exp(-|x|)) not folded yet */
  int factors;
} Loss;

static inline void add_loss(Loss *loss, float x, float e) {
  loss->positive_part += x > 0.0f ? (double)x : 0.0;
  loss->product *= 1.0 + (double)e;
  if (++loss->factors == LOSS_FOLD) {
    loss->logs += log(loss->product);
    loss->product = 1.0;
    loss->factors = 0;
  }
}

static void prefetch_row(const float *row, int64_t dim) {
  for (int64_t c = 0; c < dim; c += 16) __builtin_prefetch(row + c, 1);
  __builtin_prefetch(row + dim - 1, 1);
}

static void fetch_pair(const Shared *s, const Pairs *p, int64_t k) {
  const int32_t *t = p->targets + k * (s->negative + 1);
  prefetch_row(s->w_in + (int64_t)p->context[k] * s->dim, s->dim);
  for (int q = 0; q < p->count[k]; q++) prefetch_row(s->w_out + (int64_t)t[q] * s->dim, s->dim);
}

static void train_pairs(const Shared *s, const Pairs *p, float *restrict neu1e, Loss *loss) {
  const int64_t D = s->dim;
  for (int64_t k = 0; k < AHEAD && k < p->n; k++) fetch_pair(s, p, k);
  for (int64_t k = 0; k < p->n; k++) {
    if (k + AHEAD < p->n) fetch_pair(s, p, k + AHEAD);
    float *restrict in = s->w_in + (int64_t)p->context[k] * D;
    const int32_t *t = p->targets + k * (s->negative + 1);
    const float alpha = p->alpha[k];
    for (int64_t c = 0; c < D; c++) neu1e[c] = 0.0f;
    for (int q = 0; q < p->count[k]; q++) {
      float *restrict out = s->w_out + (int64_t)t[q] * D;
      const float f = dot(in, out, D);
      /* Exact sigmoid from e = exp(-|f|); loss -log sig(f) (positive) or -log sig(-f). */
      const float e = expf(-fabsf(f));
      const float sig = f >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
      const float g = ((q == 0 ? 1.0f : 0.0f) - sig) * alpha;
      add_loss(loss, q == 0 ? -f : f, e);
      for (int64_t c = 0; c < D; c++) {
        const float o = out[c];
        neu1e[c] += g * o;
        out[c] = o + g * in[c];
      }
    }
    for (int64_t c = 0; c < D; c++) in[c] += neu1e[c];
  }
}

/* Index of the sentence holding token p: the last k with starts[k] <= p. */
static int64_t sentence_of(const int64_t *starts, int64_t n_sentences, int64_t p) {
  int64_t lo = 0, hi = n_sentences; /* starts[lo] <= p < starts[hi] */
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (starts[mid] <= p) lo = mid; else hi = mid;
  }
  return lo;
}

/* The part [a, b) of sentence k inside the job's token range. */
static inline void piece(const Shared *s, const Job *job, int64_t k, int64_t *a, int64_t *b) {
  *a = s->starts[k] > job->begin ? s->starts[k] : job->begin;
  *b = s->starts[k + 1] < job->end ? s->starts[k + 1] : job->end;
}

static void run_job(Job *job) {
  const Shared *s = job->s;
  const int64_t span = job->end - job->begin;
  if (span <= 0) return;
  const int64_t first = sentence_of(s->starts, s->n_sentences, job->begin);
  int64_t longest = 0;
  for (int64_t k = first; k < s->n_sentences && s->starts[k] < job->end; k++) {
    int64_t a, b;
    piece(s, job, k, &a, &b);
    if (b - a > longest) longest = b - a;
  }
  const int64_t max_pairs = (int64_t)CHUNK * 2 * s->window;
  const int stride = s->negative + 1;
  int32_t *sen = malloc(sizeof(int32_t) * longest);
  int64_t *raw = malloc(sizeof(int64_t) * longest); /* token offset of each kept word */
  float *neu1e = malloc(sizeof(float) * s->dim);
  Pairs p = {malloc(sizeof(int32_t) * max_pairs), malloc(sizeof(int32_t) * max_pairs),
             malloc(sizeof(int32_t) * max_pairs * stride), malloc(sizeof(float) * max_pairs),
             0};
  if (!sen || !raw || !neu1e || !p.context || !p.count || !p.targets || !p.alpha) {
    job->err = W2V_ENOMEM;
    goto done;
  }

  uint64_t r = job->rng;
  Loss loss = {0.0, 0.0, 1.0, 0};
  int64_t pairs = 0, kept = 0;
  const double dalpha = (double)s->alpha_end - (double)s->alpha_start;

  for (int64_t k = first; k < s->n_sentences && s->starts[k] < job->end; k++) {
    int64_t a, b;
    piece(s, job, k, &a, &b);
    /* Subsample the sentence first; windows then span the kept words, as in word2vec.c. */
    int64_t n = 0;
    for (int64_t q = a; q < b; q++) {
      const int32_t w = s->tokens[q];
      const float keep = s->keep_prob[w];
      if (keep < 1.0f) {
        r = lcg(r);
        if (!((double)(r >> 40) < (double)keep * 16777216.0)) continue;
      }
      sen[n] = w;
      raw[n] = q;
      n++;
    }
    kept += n;

    /* Draws in word2vec.c's order: per centre word its window, then per context its negatives. */
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
      p.n = 0;
      for (int64_t i = i0; i < n && i < i0 + CHUNK; i++) {
        const int32_t word = sen[i];
        const float alpha =
            (float)(s->alpha_start + dalpha * (double)(raw[i] - job->begin) / (double)span);
        r = lcg(r);
        const int64_t half = 1 + (int64_t)below(r, (uint64_t)s->window);
        const int64_t lo = i - half > 0 ? i - half : 0;
        const int64_t hi = i + half < n - 1 ? i + half : n - 1;
        for (int64_t j = lo; j <= hi; j++) {
          if (j == i) continue;
          int32_t *t = p.targets + p.n * stride;
          int nt = 0;
          t[nt++] = word;
          for (int d = 0; d < s->negative; d++) {
            r = lcg(r);
            const int32_t neg = draw_negative(s->table, (uint64_t)s->vocab, r);
            if (neg != word) t[nt++] = neg;
          }
          p.context[p.n] = sen[j];
          p.count[p.n] = nt;
          p.alpha[p.n] = alpha;
          p.n++;
        }
      }
      train_pairs(s, &p, neu1e, &loss);
      pairs += p.n;
    }
  }
  job->loss = loss.positive_part + loss.logs + log(loss.product);
  job->pairs = pairs;
  job->kept = kept;

done:
  free(sen);
  free(raw);
  free(neu1e);
  free(p.context);
  free(p.count);
  free(p.targets);
  free(p.alpha);
}

static void *job_main(void *arg) {
  run_job((Job *)arg);
  return NULL;
}

/*
 * Thread t takes the tokens from cut t to cut t+1. A cut sits at t*N/threads, moved forward
 * to the next sentence start when that is within N/(16*threads) tokens; otherwise it splits a
 * long sentence (word2vec.c and gensim split long sentences too).
 */
static void plan_cuts(const int64_t *starts, int64_t n_sentences, int64_t n_tokens, int threads,
                      int64_t *cuts) {
  const int64_t slack = n_tokens / (16 * (int64_t)threads);
  cuts[0] = 0;
  cuts[threads] = n_tokens;
  for (int t = 1; t < threads; t++) {
    const int64_t p = n_tokens * t / threads;
    int64_t cut = p;
    if (n_sentences > 0) {
      const int64_t k = sentence_of(starts, n_sentences, p);
      if (starts[k] != p && starts[k + 1] - p <= slack) cut = starts[k + 1];
    }
    if (cut < cuts[t - 1]) cut = cuts[t - 1];
    cuts[t] = cut < n_tokens ? cut : n_tokens;
  }
}

int w2v_train_block(const int32_t *tokens, int64_t n_tokens, const int32_t *lengths,
                    int64_t n_sentences, float *w_in, float *w_out, int64_t vocab, int64_t dim,
                    const float *keep_prob, const int32_t *table, int window, int negative,
                    float alpha_start, float alpha_end, uint64_t seed, int threads,
                    double *loss, int64_t *pairs, int64_t *kept) {
  int err = W2V_OK;
  int64_t *starts = malloc(sizeof(int64_t) * (n_sentences + 1));
  int64_t *cuts = malloc(sizeof(int64_t) * (threads + 1));
  Job *jobs = calloc(threads, sizeof(Job));
  pthread_t *tids = calloc(threads, sizeof(pthread_t));
  char *started = calloc(threads, 1);
  if (!starts || !cuts || !jobs || !tids || !started) {
    err = W2V_ENOMEM;
    goto done;
  }
  starts[0] = 0;
  for (int64_t k = 0; k < n_sentences; k++) starts[k + 1] = starts[k] + lengths[k];
  plan_cuts(starts, n_sentences, n_tokens, threads, cuts);

  const Shared shared = {tokens, starts,    n_sentences, w_in,     w_out,       vocab,
                         dim,    keep_prob, table,       window,   negative,    alpha_start,
                         alpha_end};
  for (int t = 0; t < threads; t++) {
    jobs[t].s = &shared;
    jobs[t].begin = cuts[t];
    jobs[t].end = cuts[t + 1];
    /* Thread t starts from output t+1 of SplitMix64 seeded with `seed`. */
    jobs[t].rng = splitmix64(seed + (uint64_t)t * 0x9E3779B97F4A7C15ULL);
  }
  /* Thread 0 runs here; a thread that cannot be started runs here too, after it. */
  for (int t = 1; t < threads; t++)
    started[t] = pthread_create(&tids[t], NULL, job_main, &jobs[t]) == 0;
  run_job(&jobs[0]);
  for (int t = 1; t < threads; t++) {
    if (started[t]) pthread_join(tids[t], NULL);
    else run_job(&jobs[t]);
  }

  *loss = 0.0;
  *pairs = 0;
  *kept = 0;
  for (int t = 0; t < threads; t++) {
    if (jobs[t].err) err = jobs[t].err;
    *loss += jobs[t].loss;
    *pairs += jobs[t].pairs;
    *kept += jobs[t].kept;
  }

done:
  free(starts);
  free(cuts);
  free(jobs);
  free(tids);
  free(started);
  return err;
}
