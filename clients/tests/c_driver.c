/* The C API under test, driven by tests/clients/test_c_api.py: as calsurr_cpp_driver, in C.
 *
 *   calsurr_c_driver MODE ADDRESS MODEL N_PARTICLES [IN OUT] [--option value]...
 *   MODE: predict | coalesce (IN OUT), card | particles
 *   OUT: 5 arrays of n_events float64 (mean, sigma_stat, sigma_syst, sigma_tot, status code per row)
 * One JSON line on stdout; exit 0 when every call succeeded, 1 when one failed, 2 for a usage or file error.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calsurr/calsurr.h"

static void print_json_string(const char* text) {
  putchar('"');
  for (const unsigned char* c = (const unsigned char*)text; *c; ++c) {
    if (*c == '"' || *c == '\\') {
      printf("\\%c", *c);
    } else if (*c < 0x20) {
      printf("\\u%04x", *c);
    } else {
      putchar(*c);
    }
  }
  putchar('"');
}

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double* read_doubles(const char* path, int64_t* count) {
  FILE* file = fopen(path, "rb");
  if (file == NULL) return NULL;
  fseek(file, 0, SEEK_END);
  long bytes = ftell(file);
  fseek(file, 0, SEEK_SET);
  double* values = malloc(bytes > 0 ? (size_t)bytes : 1);
  *count = (int64_t)((size_t)bytes / sizeof(double));
  if (values != NULL && fread(values, sizeof(double), (size_t)*count, file) != (size_t)*count) {
    free(values);
    values = NULL;
  }
  fclose(file);
  return values;
}

struct shared {
  calsurr_client* client;
  const char* model;
  const double* momenta;
  int64_t n_events;
  int n_particles;
  int threads;
  double* out;
  pthread_mutex_t mutex;
  int first_code;
  char first_message[1024];
};

struct caller {
  struct shared* shared;
  int index;
};

static void* coalesce_caller(void* argument) {
  struct caller* me = argument;
  struct shared* s = me->shared;
  const int64_t n = s->n_events;
  for (int64_t row = me->index; row < n; row += s->threads) {
    int code = calsurr_predict(s->client, s->model, s->momenta + row * s->n_particles * 4, 1, s->n_particles,
                               s->out + row, s->out + n + row, s->out + 2 * n + row, s->out + 3 * n + row);
    s->out[4 * n + row] = code;
    if (code != CALSURR_OK) {
      pthread_mutex_lock(&s->mutex);
      if (s->first_code == CALSURR_OK) {
        s->first_code = code;
        snprintf(s->first_message, sizeof s->first_message, "%s", calsurr_last_error());
      }
      pthread_mutex_unlock(&s->mutex);
    }
  }
  return NULL;
}

static const char* flag(int argc, char** argv, const char* name) {
  for (int i = 1; i + 1 < argc; ++i)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return NULL;
}

int main(int argc, char** argv) {
  const char* positional[6] = {0};
  int n_positional = 0;
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--", 2) == 0) {
      ++i;
    } else if (n_positional < 6) {
      positional[n_positional++] = argv[i];
    }
  }
  if (n_positional < 4) {
    fprintf(stderr, "usage: %s MODE ADDRESS MODEL N_PARTICLES [IN OUT] [--option value]...\n", argv[0]);
    return 2;
  }
  const char *mode = positional[0], *address = positional[1], *model = positional[2];
  const int n_particles = atoi(positional[3]);
  const int with_files = strcmp(mode, "predict") == 0 || strcmp(mode, "coalesce") == 0;

  calsurr_options options;
  calsurr_options_init(&options);
  const char* value;
  if ((value = flag(argc, argv, "--timeout"))) options.timeout_seconds = atof(value);
  if ((value = flag(argc, argv, "--max-attempts"))) options.max_attempts = atoi(value);
  if ((value = flag(argc, argv, "--initial-backoff"))) options.initial_backoff_seconds = atof(value);
  if ((value = flag(argc, argv, "--chunk-rows"))) options.chunk_rows = atoll(value);
  if ((value = flag(argc, argv, "--in-flight"))) options.max_in_flight = atoi(value);
  if ((value = flag(argc, argv, "--window-us"))) options.coalesce_window_us = atof(value);
  if ((value = flag(argc, argv, "--token"))) options.bearer_token = value;
  const int threads = (value = flag(argc, argv, "--threads")) ? atoi(value) : 64;

  double* momenta = NULL;
  int64_t n_values = 0, n_events = 0;
  if (with_files) {
    if (n_positional < 6 || (momenta = read_doubles(positional[4], &n_values)) == NULL) {
      fprintf(stderr, "mode %s needs a readable IN and an OUT\n", mode);
      return 2;
    }
    n_events = n_values / ((int64_t)n_particles * 4);
  }
  double* out = calloc((size_t)(5 * n_events + 1), sizeof(double));

  calsurr_client* client = NULL;
  int code = calsurr_connect(address, &options, &client);
  char message[4096] = "";
  char* card = NULL;
  int particles = 0;
  const double start = now_seconds();
  if (code == CALSURR_OK) {
    if (strcmp(mode, "predict") == 0) {
      code = calsurr_predict(client, model, momenta, n_events, n_particles, out, out + n_events, out + 2 * n_events,
                             out + 3 * n_events);
    } else if (strcmp(mode, "coalesce") == 0) {
      struct shared s = {client, model, momenta, n_events, n_particles, threads, out, PTHREAD_MUTEX_INITIALIZER,
                         CALSURR_OK, ""};
      pthread_t* ids = malloc(sizeof(pthread_t) * (size_t)threads);
      struct caller* callers = malloc(sizeof(struct caller) * (size_t)threads);
      for (int t = 0; t < threads; ++t) {
        callers[t].shared = &s;
        callers[t].index = t;
        pthread_create(&ids[t], NULL, coalesce_caller, &callers[t]);
      }
      for (int t = 0; t < threads; ++t) pthread_join(ids[t], NULL);
      free(ids);
      free(callers);
      code = s.first_code;
      if (code != CALSURR_OK) snprintf(message, sizeof message, "%s", s.first_message);
    } else if (strcmp(mode, "card") == 0) {
      size_t needed = 0;
      code = calsurr_card_json(client, model, NULL, 0, &needed);  /* asks for the size */
      if (code == CALSURR_RESOURCE_EXHAUSTED) {
        card = malloc(needed + 1);
        code = calsurr_card_json(client, model, card, needed + 1, &needed);
      }
    } else if (strcmp(mode, "particles") == 0) {
      code = calsurr_model_particles(client, model, &particles);
    } else {
      fprintf(stderr, "unknown mode %s\n", mode);
      return 2;
    }
  }
  const double seconds = now_seconds() - start;
  if (code != CALSURR_OK && message[0] == '\0') snprintf(message, sizeof message, "%s", calsurr_last_error());
  if (strcmp(mode, "coalesce") != 0)
    for (int64_t r = 0; r < n_events; ++r) out[4 * n_events + r] = code;
  calsurr_close(client);

  if (with_files) {
    FILE* file = fopen(positional[5], "wb");
    if (file == NULL || fwrite(out, sizeof(double), (size_t)(5 * n_events), file) != (size_t)(5 * n_events)) {
      fprintf(stderr, "cannot write %s\n", positional[5]);
      return 2;
    }
    fclose(file);
  }
  printf("{\"code\":%d,\"message\":", code);
  print_json_string(message);
  printf(",\"rows\":%lld,\"seconds\":%.6f,\"particles\":%d", (long long)n_events, seconds, particles);
  if (card != NULL) {
    printf(",\"card\":");
    print_json_string(card);
  }
  printf("}\n");
  free(card);
  free(out);
  free(momenta);
  return code == CALSURR_OK ? 0 : 1;
}
