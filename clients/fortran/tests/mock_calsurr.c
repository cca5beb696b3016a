/* A stand-in for libcalsurr_client with the C API of calsurr.h, so that the Fortran module's unit test
 * (test_module.f90) runs without a server or the C++ library: it records what the module passes (the momenta's
 * address, which outputs are NULL, the options) and answers with values the test can predict. */
#include <stdlib.h>
#include <string.h>

#include "calsurr/calsurr.h"

#define MOCK_CARD_BYTES 10000 /* more than the module's first buffer: it must ask twice */

static _Thread_local char last_error[256];
static const void* expected_momenta;
static int momenta_at_expected; /* the momenta arrived at the address the caller announced */
static int recorded_null_outputs; /* bit 0 mean, 1 sigma_stat, 2 sigma_syst, 3 sigma_tot */
static calsurr_options recorded_options;
static char recorded_token[256];
static int closed_count, card_calls;

static int fail(int code, const char* message) {
  strncpy(last_error, message, sizeof last_error - 1);
  return code;
}

void calsurr_options_init(calsurr_options* options) {
  memset(options, 0, sizeof *options);
  options->timeout_seconds = 30;
  options->max_attempts = 5;
  options->initial_backoff_seconds = 0.1;
  options->max_backoff_seconds = 5;
  options->max_in_flight = 4;
  options->coalesce_window_us = 100;
  options->coalesce_max_rows = 64;
}

int calsurr_connect(const char* address, const calsurr_options* options, calsurr_client** client) {
  last_error[0] = '\0';
  if (strcmp(address, "unreachable:1") == 0) return fail(CALSURR_UNAVAILABLE, "mock: unreachable:1 is down");
  recorded_options = *options;
  recorded_token[0] = '\0';
  if (options->bearer_token) strncpy(recorded_token, options->bearer_token, sizeof recorded_token - 1);
  *client = (calsurr_client*)malloc(16);
  return CALSURR_OK;
}

int calsurr_predict(calsurr_client* client, const char* model, const double* momenta, int64_t n_events,
                    int n_particles, double* mean, double* sigma_stat, double* sigma_syst, double* sigma_tot) {
  last_error[0] = '\0';
  if (!client) return fail(CALSURR_INVALID_ARGUMENT, "mock: no client");
  if (strcmp(model, "gg_gg") != 0) return fail(CALSURR_NOT_FOUND, "mock: unknown model");
  if (n_particles != 4) return fail(CALSURR_INVALID_ARGUMENT, "mock: expects [-1, 4, 4]");
  momenta_at_expected = expected_momenta != NULL && (const void*)momenta == expected_momenta;
  recorded_null_outputs = (!mean) | (!sigma_stat) << 1 | (!sigma_syst) << 2 | (!sigma_tot) << 3;
  for (int64_t i = 0; i < n_events; ++i) {
    double sum = 0;
    for (int k = 0; k < 4 * n_particles; ++k) sum += momenta[i * 4 * n_particles + k];
    if (mean) mean[i] = sum;
    if (sigma_stat) sigma_stat[i] = (double)i;
    if (sigma_syst) sigma_syst[i] = 2.0 * (double)i;
    if (sigma_tot) sigma_tot[i] = momenta[i * 4 * n_particles + 4 * n_particles - 1]; /* last p_z */
  }
  return CALSURR_OK;
}

int calsurr_card_json(calsurr_client* client, const char* model, char* buffer, size_t size, size_t* needed) {
  (void)client;
  ++card_calls;
  if (strcmp(model, "gg_gg") != 0) return fail(CALSURR_NOT_FOUND, "mock: unknown model");
  if (needed) *needed = MOCK_CARD_BYTES;
  if (size < MOCK_CARD_BYTES + 1) return fail(CALSURR_RESOURCE_EXHAUSTED, "mock: buffer too small");
  memset(buffer, ' ', MOCK_CARD_BYTES);
  memcpy(buffer, "{\"process\": \"gg_gg\"", 19);
  buffer[MOCK_CARD_BYTES - 1] = '}';
  buffer[MOCK_CARD_BYTES] = '\0';
  last_error[0] = '\0';
  return CALSURR_OK;
}

int calsurr_model_particles(calsurr_client* client, const char* model, int* n_particles) {
  (void)client;
  if (strcmp(model, "gg_gg") != 0) return fail(CALSURR_NOT_FOUND, "mock: unknown model");
  *n_particles = 4;
  return CALSURR_OK;
}

const char* calsurr_last_error(void) { return last_error; }

void calsurr_close(calsurr_client* client) {
  if (client) ++closed_count;
  free(client);
}

/* What the test reads back. */
/* Compared inside the call: after it, the address of a non-TARGET dummy means nothing (and the optimiser knows). */
void mock_expect_momenta(const void* address) { expected_momenta = address; }
int mock_momenta_at_expected(void) { return momenta_at_expected; }
int mock_recorded_null_outputs(void) { return recorded_null_outputs; }
double mock_recorded_timeout(void) { return recorded_options.timeout_seconds; }
int mock_recorded_max_attempts(void) { return recorded_options.max_attempts; }
double mock_recorded_coalesce_window(void) { return recorded_options.coalesce_window_us; }
const char* mock_recorded_token(void) { return recorded_token; }
int mock_closed_count(void) { return closed_count; }
int mock_card_calls(void) { return card_calls; }
