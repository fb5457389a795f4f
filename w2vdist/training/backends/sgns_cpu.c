/*
 * Skip-gram with negative sampling over one block of token ids, as word2vec.c trains it:
 * one (context, centre) pair at a time, plain SGD, Hogwild threads without locks.
 *
 * Built and loaded by w2vdist/training/backends/cpu.py, which documents the semantics and
 * checks every argument; this file trusts its inputs. No OpenMP runtime: plain pthreads, so
 * that loading it never brings a second OpenMP runtime into a process that already has torch's.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

enum { W2V_OK = 0, W2V_ENOMEM = 1 };

#define SHARE 1024 /* tokens of whole sentences a thread takes at a time */
#define CHUNK 32   /* centre words whose random draws are made before any of their pairs train */
#define AHEAD 2    /* pairs between fetching a pair's rows and training it */
#define LOSS_FOLD 512 /* factors (1 + e) <= 2 multiplied before one log: far below DBL_MAX */

#include "sgns_dot.h" /* dot(a, b, n), vectorised where the CPU allows */

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
  const int64_t *shares; /* n_shares + 1 first sentences of each share */
  int64_t n_tokens, n_shares, next_share;
  float *w_in, *w_out;
  int64_t vocab, dim;
  const float *keep_prob;
  const int32_t *table;
  int window, negative;
  float alpha_start, alpha_end;
  /* Optional (NULL: not tracked): squared row norms as of the last merge, and the saturation
   * each row gathers, sum of alpha * |g| / 2 * |other row|^2 over its updates (sync.py). */
  const float *norm_in, *norm_out;
  float *sat_in, *sat_out;
  int share; /* 1: a centre word's negatives serve every context of its window */
} Shared;

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

typedef struct {
  Shared *s;
  uint64_t rng;
  int32_t *sen; /* the kept words of the current sentence */
  int64_t *pos; /* and their offsets in the block */
  float *neu1e;
  Pairs pairs;
  Loss loss;
  int64_t n_pairs, kept;
  char pad[64]; /* keeps the counters of neighbouring workers off each other's cache lines */
} Worker;

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
    float sat = 0.0f;
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
      if (s->sat_in) {
        const float h = 0.5f * fabsf(g);
        sat += h * s->norm_out[t[q]];
        s->sat_out[t[q]] += h * s->norm_in[p->context[k]];
      }
    }
    for (int64_t c = 0; c < D; c++) in[c] += neu1e[c];
    if (s->sat_in) s->sat_in[p->context[k]] += sat;
  }
}

/* Tokens [a, b) are one sentence. */
static void train_sentence(Worker *w, int64_t a, int64_t b) {
  const Shared *s = w->s;
  Pairs *p = &w->pairs;
  const int stride = s->negative + 1;
  const double dalpha = ((double)s->alpha_end - (double)s->alpha_start) / (double)s->n_tokens;
  uint64_t r = w->rng;
  Loss loss = w->loss; /* a local copy can live in registers across the calls to expf */

  /* Subsample the sentence first; windows then span the kept words, as in word2vec.c. */
  int64_t n = 0;
  for (int64_t q = a; q < b; q++) {
    const int32_t word = s->tokens[q];
    const float keep = s->keep_prob[word];
    if (keep < 1.0f) {
      r = lcg(r);
      if (!((double)(r >> 40) < (double)keep * 16777216.0)) continue;
    }
    w->sen[n] = word;
    w->pos[n] = q;
    n++;
  }
  w->kept += n;

  /* Draws in word2vec.c's order: per centre word its window, then per context its negatives. */
  for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
    p->n = 0;
    for (int64_t i = i0; i < n && i < i0 + CHUNK; i++) {
      const int32_t word = w->sen[i];
      const float alpha = (float)(s->alpha_start + dalpha * (double)w->pos[i]);
      r = lcg(r);
      const int64_t half = 1 + (int64_t)below(r, (uint64_t)s->window);
      const int64_t lo = i - half > 0 ? i - half : 0;
      const int64_t hi = i + half < n - 1 ? i + half : n - 1;
      int32_t *first = NULL; /* the window's first pair's targets, when they are shared */
      int shared_count = 0;
      for (int64_t j = lo; j <= hi; j++) {
        if (j == i) continue;
        int32_t *t = p->targets + p->n * stride;
        int nt = 0;
        if (first) {
          for (; nt < shared_count; nt++) t[nt] = first[nt];
        } else {
          t[nt++] = word;
          for (int d = 0; d < s->negative; d++) {
            r = lcg(r);
            const int32_t neg = draw_negative(s->table, (uint64_t)s->vocab, r);
            if (neg != word) t[nt++] = neg;
          }
          if (s->share) {
            first = t;
            shared_count = nt;
          }
        }
        p->context[p->n] = w->sen[j];
        p->count[p->n] = nt;
        p->alpha[p->n] = alpha;
        p->n++;
      }
    }
    train_pairs(s, p, w->neu1e, &loss);
    w->n_pairs += p->n;
  }
  w->rng = r;
  w->loss = loss;
}

/* Takes shares of whole sentences from the shared counter until none is left. */
static void *run_worker(void *arg) {
  Worker *w = arg;
  Shared *s = w->s;
  for (;;) {
    const int64_t k = __atomic_fetch_add(&s->next_share, 1, __ATOMIC_RELAXED);
    if (k >= s->n_shares) break;
    for (int64_t i = s->shares[k]; i < s->shares[k + 1]; i++)
      train_sentence(w, s->starts[i], s->starts[i + 1]);
  }
  return NULL;
}

static int worker_init(Worker *w, Shared *s, int64_t longest, uint64_t rng) {
  /* A centre's contexts are at most 2 x window, and at most the rest of its sentence: a
     window far past the longest sentence (item2vec's) costs no more than the sentence. */
  const int64_t reach = s->window < longest ? s->window : (longest > 0 ? longest : 1);
  const int64_t max_pairs = (int64_t)CHUNK * 2 * reach;
  w->s = s;
  w->rng = rng;
  w->loss.product = 1.0;
  w->sen = malloc(sizeof(int32_t) * (longest + 1));
  w->pos = malloc(sizeof(int64_t) * (longest + 1));
  w->neu1e = malloc(sizeof(float) * s->dim);
  w->pairs.context = malloc(sizeof(int32_t) * max_pairs);
  w->pairs.count = malloc(sizeof(int32_t) * max_pairs);
  w->pairs.targets = malloc(sizeof(int32_t) * max_pairs * (s->negative + 1));
  w->pairs.alpha = malloc(sizeof(float) * max_pairs);
  return w->sen && w->pos && w->neu1e && w->pairs.context && w->pairs.count &&
         w->pairs.targets && w->pairs.alpha;
}

static void worker_free(Worker *w) {
  free(w->sen);
  free(w->pos);
  free(w->neu1e);
  free(w->pairs.context);
  free(w->pairs.count);
  free(w->pairs.targets);
  free(w->pairs.alpha);
}

int w2v_train_block(const int32_t *tokens, int64_t n_tokens, const int32_t *lengths,
                    int64_t n_sentences, float *w_in, float *w_out, int64_t vocab, int64_t dim,
                    const float *keep_prob, const int32_t *table, int window, int negative,
                    float alpha_start, float alpha_end, const float *norm_in,
                    const float *norm_out, float *sat_in, float *sat_out, int share,
                    uint64_t seed, int threads, double *loss, int64_t *pairs, int64_t *kept) {
  int err = W2V_OK;
  int64_t *starts = malloc(sizeof(int64_t) * (n_sentences + 1));
  int64_t *shares = malloc(sizeof(int64_t) * (n_sentences + 1));
  Worker *workers = calloc(threads, sizeof(Worker));
  pthread_t *tids = calloc(threads, sizeof(pthread_t));
  char *started = calloc(threads, 1);
  *loss = 0.0;
  *pairs = 0;
  *kept = 0;
  if (!starts || !shares || !workers || !tids || !started) {
    err = W2V_ENOMEM;
    goto done;
  }

  /* Shares: runs of whole sentences of at least SHARE tokens (the last may have fewer). */
  int64_t longest = 0, n_shares = 0, share_start = 0;
  starts[0] = 0;
  for (int64_t k = 0; k < n_sentences; k++) {
    if (k == 0 || starts[k] - share_start >= SHARE) {
      shares[n_shares++] = k;
      share_start = starts[k];
    }
    starts[k + 1] = starts[k] + lengths[k];
    if (lengths[k] > longest) longest = lengths[k];
  }
  shares[n_shares] = n_sentences;
  if (threads > n_shares) threads = n_shares > 0 ? (int)n_shares : 1;

  Shared shared = {.tokens = tokens, .starts = starts, .shares = shares, .n_tokens = n_tokens,
                   .n_shares = n_shares, .next_share = 0, .w_in = w_in, .w_out = w_out,
                   .vocab = vocab, .dim = dim, .keep_prob = keep_prob, .table = table,
                   .window = window, .negative = negative, .alpha_start = alpha_start,
                   .alpha_end = alpha_end, .norm_in = norm_in, .norm_out = norm_out,
                   .sat_in = sat_in, .sat_out = sat_out, .share = share};
  for (int t = 0; t < threads; t++)
    /* Thread t starts from output t+1 of SplitMix64 seeded with `seed`. */
    if (!worker_init(&workers[t], &shared, longest,
                     splitmix64(seed + (uint64_t)t * 0x9E3779B97F4A7C15ULL)))
      err = W2V_ENOMEM;
  if (err) goto free_workers;

  /* Worker 0 runs here; a thread that cannot be started just leaves its shares to the others. */
  for (int t = 1; t < threads; t++)
    started[t] = pthread_create(&tids[t], NULL, run_worker, &workers[t]) == 0;
  run_worker(&workers[0]);
  for (int t = 1; t < threads; t++)
    if (started[t]) pthread_join(tids[t], NULL);

  for (int t = 0; t < threads; t++) {
    const Loss *l = &workers[t].loss;
    *loss += l->positive_part + l->logs + log(l->product);
    *pairs += workers[t].n_pairs;
    *kept += workers[t].kept;
  }

free_workers:
  for (int t = 0; t < threads; t++) worker_free(&workers[t]);
done:
  free(starts);
  free(shares);
  free(workers);
  free(tids);
  free(started);
  return err;
}
