/*
 * Skip-gram with negative sampling over one block of token ids, as word2vec.c trains it:
 * one (context, centre) pair at a time, plain SGD, Hogwild threads without locks.
 *
 * Built and loaded by w2vdist/kernels/cpu.py (which documents the semantics and checks every
 * argument); this file trusts its inputs. No OpenMP runtime: plain pthreads, so that loading it
 * never brings a second OpenMP runtime into a process that already has torch's.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { W2V_OK = 0, W2V_ENOMEM = 1 };

/* Products of (1 + e) terms are folded into a log every this many factors: each factor is
 * at most 2, so the product stays far below DBL_MAX. */
#define LOSS_FOLD 512

typedef struct {
  const int32_t *tokens;
  const int64_t *starts; /* n_sentences + 1 sentence start offsets */
  int64_t n_sentences;
  float *w_in, *w_out;
  int64_t dim;
  const float *keep_prob;
  const int32_t *table;
  uint64_t table_size;
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
} Job;

static inline uint64_t lcg(uint64_t r) { return r * 25214903917ULL + 11ULL; }

/* Uniform integer in [0, n) from the 32 high bits of r (the LCG's low bits are weak). */
static inline uint64_t below(uint64_t r, uint64_t n) { return ((r >> 32) * n) >> 32; }

static uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* Index of the sentence holding token p: the last k with starts[k] <= p. */
static int64_t sentence_of(const int64_t *starts, int64_t n_sentences, int64_t p) {
  int64_t lo = 0, hi = n_sentences; /* starts[lo] <= p < starts[hi] */
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (starts[mid] <= p) lo = mid; else hi = mid;
  }
  return lo;
}

static void run_job(Job *job) {
  const Shared *s = job->s;
  const int64_t D = s->dim;
  const int64_t span = job->end - job->begin;
  if (span <= 0 || s->n_sentences == 0) return;
  const int64_t first = sentence_of(s->starts, s->n_sentences, job->begin);

  int64_t longest = 0;
  for (int64_t k = first; k < s->n_sentences && s->starts[k] < job->end; k++) {
    int64_t a = s->starts[k] > job->begin ? s->starts[k] : job->begin;
    int64_t b = s->starts[k + 1] < job->end ? s->starts[k + 1] : job->end;
    if (b - a > longest) longest = b - a;
  }
  int32_t *sen = malloc(sizeof(int32_t) * longest);
  int64_t *raw = malloc(sizeof(int64_t) * longest); /* token offset of each kept word */
  int32_t *targets = malloc(sizeof(int32_t) * (s->negative + 1));
  float *neu1e = malloc(sizeof(float) * D);
  if (!sen || !raw || !targets || !neu1e) {
    job->err = W2V_ENOMEM;
    goto done;
  }

  uint64_t r = job->rng;
  double lin = 0.0, logs = 0.0, prod = 1.0;
  int nprod = 0;
  const double dalpha = (double)s->alpha_end - (double)s->alpha_start;

  for (int64_t k = first; k < s->n_sentences && s->starts[k] < job->end; k++) {
    const int64_t a = s->starts[k] > job->begin ? s->starts[k] : job->begin;
    const int64_t b = s->starts[k + 1] < job->end ? s->starts[k + 1] : job->end;

    /* Subsample the sentence first; windows then span the kept words, as in word2vec.c. */
    int64_t n = 0;
    for (int64_t p = a; p < b; p++) {
      const int32_t w = s->tokens[p];
      const float keep = s->keep_prob[w];
      if (keep < 1.0f) {
        r = lcg(r);
        if (!((double)(r >> 40) < (double)keep * 16777216.0)) continue;
      }
      sen[n] = w;
      raw[n] = p;
      n++;
    }
    job->kept += n;

    for (int64_t i = 0; i < n; i++) {
      const int32_t word = sen[i];
      const float alpha =
          (float)(s->alpha_start + dalpha * (double)(raw[i] - job->begin) / (double)span);
      float *restrict out_word = s->w_out + (int64_t)word * D;
      r = lcg(r);
      const int64_t half = 1 + (int64_t)below(r, (uint64_t)s->window);
      const int64_t lo = i - half > 0 ? i - half : 0;
      const int64_t hi = i + half < n - 1 ? i + half : n - 1;

      for (int64_t j = lo; j <= hi; j++) {
        if (j == i) continue;
        float *restrict in = s->w_in + (int64_t)sen[j] * D;

        /* Draw the negatives up front (same draws, same order) so their rows can be fetched
         * while the positive target trains. */
        int nt = 0;
        targets[nt++] = word;
        for (int d = 0; d < s->negative; d++) {
          r = lcg(r);
          const int32_t t = s->table[below(r, s->table_size)];
          if (t == word) continue;
          targets[nt++] = t;
          __builtin_prefetch(s->w_out + (int64_t)t * D);
        }

        for (int64_t c = 0; c < D; c++) neu1e[c] = 0.0f;
        for (int q = 0; q < nt; q++) {
          float *restrict out = q == 0 ? out_word : s->w_out + (int64_t)targets[q] * D;
          float f = 0.0f;
#pragma omp simd reduction(+ : f)
          for (int64_t c = 0; c < D; c++) f += in[c] * out[c];
          /* Exact sigmoid from e = exp(-|f|); -log sig(+-f) = max(-+f, 0) + log1p(e). */
          const float e = expf(-fabsf(f));
          const float sig = f >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
          const float label = q == 0 ? 1.0f : 0.0f;
          const float g = (label - sig) * alpha;
          const float x = q == 0 ? -f : f;
          lin += x > 0.0f ? (double)x : 0.0;
          prod *= 1.0 + (double)e;
          if (++nprod == LOSS_FOLD) {
            logs += log(prod);
            prod = 1.0;
            nprod = 0;
          }
#pragma omp simd
          for (int64_t c = 0; c < D; c++) neu1e[c] += g * out[c];
#pragma omp simd
          for (int64_t c = 0; c < D; c++) out[c] += g * in[c];
        }
#pragma omp simd
        for (int64_t c = 0; c < D; c++) in[c] += neu1e[c];
        job->pairs++;
      }
    }
  }
  job->loss = lin + logs + log(prod);

done:
  free(sen);
  free(raw);
  free(targets);
  free(neu1e);
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
                    int64_t n_sentences, float *w_in, float *w_out, int64_t dim,
                    const float *keep_prob, const int32_t *table, int64_t table_size, int window,
                    int negative, float alpha_start, float alpha_end, uint64_t seed, int threads,
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

  Shared shared = {tokens,  starts,     n_sentences, w_in,        w_out,
                   dim,     keep_prob,  table,       (uint64_t)table_size,
                   window,  negative,   alpha_start, alpha_end};
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
