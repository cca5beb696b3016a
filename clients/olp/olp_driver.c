/* A generator's side of BLHA2, as Herwig and Whizard do it: dlopen the OLP library (RTLD_NOW | RTLD_LOCAL),
 * dlsym the four entry points, OLP_Start on an order file, OLP_Info, OLP_SetParameter, then
 * OLP_EvalSubProcess2 for each phase-space point of a file, from one or several threads.
 *
 *   olp_driver LIBRARY ORDER_FILE MOMENTA.bin N_LEGS OUT.bin [--id ID] [--threads T] [--set NAME=VALUE]...
 *              [--wait-for PATH]
 *
 * MOMENTA.bin: raw float64 [N, N_LEGS, 5], BLHA's (E, px, py, pz, m) per leg. OUT.bin: float64 [N, 2], per
 * point rval[0] and acc. Prints one line per OLP call (`OLP_Start ierr 1`, `OLP_Info ...`, `OLP_SetParameter
 * NAME ierr 2`). Exit status 0; 2 if OLP_Start answers ierr != 1 (nothing is evaluated); 3 if the OLP wrote
 * rval beyond rval[0] (a Tree has one entry); 1 for a usage or I/O error. --wait-for PATH: after the set-up
 * calls, wait until PATH exists before evaluating (so a test can stop the server in between).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef void (*olp_start_t)(const char*, int*);
typedef void (*olp_info_t)(char[15], char[15], char[255]);
typedef void (*olp_set_parameter_t)(const char*, const double*, const double*, int*);
typedef void (*olp_eval_t)(const int*, const double*, const double*, double*, double*);

#define RVAL_ENTRIES 16          /* room for a Loop's 4 or a ccTree's n(n-1)/2: only rval[0] may change */
#define SENTINEL (-12345.678)
#define MAX_THREADS 256

static olp_eval_t olp_eval;

struct slice {
  const double* momenta; /* [N, n_legs, 5] */
  double* out;           /* [N, 2] */
  long first, count;
  int n_legs, id, overwrite;
};

static void* evaluate(void* argument) {
  struct slice* s = argument;
  const double mu = 91.188;
  for (long i = s->first; i < s->first + s->count; ++i) {
    double rval[RVAL_ENTRIES], acc = -1;
    for (int k = 0; k < RVAL_ENTRIES; ++k) rval[k] = SENTINEL;
    olp_eval(&s->id, s->momenta + i * 5 * s->n_legs, &mu, rval, &acc);
    for (int k = 1; k < RVAL_ENTRIES; ++k)
      if (rval[k] != SENTINEL) s->overwrite = 1;
    s->out[2 * i] = rval[0];
    s->out[2 * i + 1] = acc;
  }
  return NULL;
}

static void* symbol(void* library, const char* name) {
  dlerror();
  void* address = dlsym(library, name);
  const char* error = dlerror();
  if (error || !address) {
    fprintf(stderr, "olp_driver: no symbol %s: %s\n", name, error ? error : "NULL");
    exit(1);
  }
  return address;
}

static double* read_file(const char* path, long* n_doubles) {
  FILE* file = fopen(path, "rb");
  if (!file) return NULL;
  fseek(file, 0, SEEK_END);
  long bytes = ftell(file);
  fseek(file, 0, SEEK_SET);
  *n_doubles = bytes / (long)sizeof(double);
  double* data = malloc((size_t)(*n_doubles > 0 ? *n_doubles : 1) * sizeof(double));
  if (data && fread(data, sizeof(double), (size_t)*n_doubles, file) != (size_t)*n_doubles) {
    free(data);
    data = NULL;
  }
  fclose(file);
  return data;
}

int main(int argc, char** argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: olp_driver LIBRARY ORDER_FILE MOMENTA.bin N_LEGS OUT.bin [--id ID] [--threads T] "
                    "[--set NAME=VALUE]...\n");
    return 1;
  }
  const int n_legs = atoi(argv[4]);
  int id = 1, threads = 1;
  const char* wait_for = NULL;
  setvbuf(stdout, NULL, _IOLBF, 0); /* a test reads each line as it comes */

  void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    fprintf(stderr, "olp_driver: dlopen %s: %s\n", argv[1], dlerror());
    return 1;
  }
  olp_start_t olp_start = (olp_start_t)symbol(library, "OLP_Start");
  olp_info_t olp_info = (olp_info_t)symbol(library, "OLP_Info");
  olp_set_parameter_t olp_set_parameter = (olp_set_parameter_t)symbol(library, "OLP_SetParameter");
  olp_eval = (olp_eval_t)symbol(library, "OLP_EvalSubProcess2");

  int ierr = -1;
  olp_start(argv[2], &ierr);
  printf("OLP_Start ierr %d\n", ierr);
  if (ierr != 1) return 2;

  char name[15], version[15], message[255];
  memset(name, 'x', sizeof name);
  memset(version, 'x', sizeof version);
  memset(message, 'x', sizeof message);
  olp_info(name, version, message);
  if (!memchr(name, '\0', sizeof name) || !memchr(version, '\0', sizeof version) ||
      !memchr(message, '\0', sizeof message)) {
    fprintf(stderr, "olp_driver: OLP_Info left a string without its NUL\n");
    return 1;
  }
  printf("OLP_Info name %s version %s message %s\n", name, version, message);

  for (int a = 6; a + 1 < argc; a += 2) {
    if (strcmp(argv[a], "--id") == 0) {
      id = atoi(argv[a + 1]);
    } else if (strcmp(argv[a], "--wait-for") == 0) {
      wait_for = argv[a + 1];
    } else if (strcmp(argv[a], "--threads") == 0) {
      threads = atoi(argv[a + 1]);
    } else if (strcmp(argv[a], "--set") == 0) {
      char* equals = strchr(argv[a + 1], '=');
      if (!equals) return fprintf(stderr, "olp_driver: --set NAME=VALUE\n"), 1;
      *equals = '\0';
      const double re = atof(equals + 1), im = 0;
      int status = -1;
      olp_set_parameter(argv[a + 1], &re, &im, &status);
      printf("OLP_SetParameter %s ierr %d\n", argv[a + 1], status);
    } else {
      return fprintf(stderr, "olp_driver: unknown option %s\n", argv[a]), 1;
    }
  }
  if (threads < 1 || threads > MAX_THREADS || n_legs < 1) return fprintf(stderr, "olp_driver: bad numbers\n"), 1;

  if (wait_for) {
    printf("waiting for %s\n", wait_for);
    struct stat info;
    const struct timespec pause = {0, 10 * 1000 * 1000};
    for (int tries = 0; stat(wait_for, &info) != 0; ++tries) {
      if (tries > 6000) return fprintf(stderr, "olp_driver: %s never appeared\n", wait_for), 1;
      nanosleep(&pause, NULL);
    }
  }

  long n_doubles = 0;
  double* momenta = read_file(argv[3], &n_doubles);
  if (!momenta || n_doubles % (5L * n_legs) != 0) {
    fprintf(stderr, "olp_driver: %s is not float64 [N, %d, 5]\n", argv[3], n_legs);
    return 1;
  }
  const long n_points = n_doubles / (5L * n_legs);
  double* out = malloc((size_t)(n_points > 0 ? n_points : 1) * 2 * sizeof(double));
  pthread_t workers[MAX_THREADS];
  struct slice slices[MAX_THREADS];
  for (int t = 0; t < threads; ++t) {
    const long first = n_points * t / threads, last = n_points * (t + 1) / threads;
    slices[t] = (struct slice){momenta, out, first, last - first, n_legs, id, 0};
    pthread_create(&workers[t], NULL, evaluate, &slices[t]);
  }
  int overwrite = 0;
  for (int t = 0; t < threads; ++t) {
    pthread_join(workers[t], NULL);
    overwrite |= slices[t].overwrite;
  }
  FILE* file = fopen(argv[5], "wb");
  if (!file || fwrite(out, sizeof(double), (size_t)(2 * n_points), file) != (size_t)(2 * n_points)) {
    fprintf(stderr, "olp_driver: cannot write %s\n", argv[5]);
    return 1;
  }
  fclose(file);
  printf("OLP_EvalSubProcess2 points %ld threads %d\n", n_points, threads);
  free(momenta);
  free(out);
  if (overwrite) {
    fprintf(stderr, "olp_driver: the OLP wrote rval beyond rval[0]\n");
    return 3;
  }
  return 0;
}
