/* calsurr C API: a served surrogate from C, Fortran (ISO_C_BINDING) or any language with a C FFI.
 *
 * Opaque handles, caller-owned buffers, integer status codes and a thread-local message. The status codes
 * are the gRPC status codes (0 OK, 3 INVALID_ARGUMENT, 4 DEADLINE_EXCEEDED, 5 NOT_FOUND, 14 UNAVAILABLE, ...);
 * a mistake the client catches before sending (a NULL pointer, a shape the model's metadata refuses) is
 * INVALID_ARGUMENT too. No C++ exception ever crosses this boundary.
 *
 * Momenta are (E, px, py, pz) in GeV, float64, row-major [n_events][n_particles][4], particles in the model's
 * process order, incoming first: Fortran's p(0:3, nexternal, nevents) is this layout already.
 *
 *     calsurr_options options;
 *     calsurr_options_init(&options);
 *     calsurr_client* client = NULL;
 *     if (calsurr_connect("127.0.0.1:8001", &options, &client) != CALSURR_OK) puts(calsurr_last_error());
 *     int status = calsurr_predict(client, "gg_ggg", momenta, n_events, 5, mean, sigma_stat, sigma_syst, sigma_tot);
 *     calsurr_close(client);
 */
#ifndef CALSURR_CALSURR_H
#define CALSURR_CALSURR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* gRPC status codes, as returned by every function that returns int. */
enum {
  CALSURR_OK = 0,
  CALSURR_CANCELLED = 1,
  CALSURR_UNKNOWN = 2,
  CALSURR_INVALID_ARGUMENT = 3,
  CALSURR_DEADLINE_EXCEEDED = 4,
  CALSURR_NOT_FOUND = 5,
  CALSURR_RESOURCE_EXHAUSTED = 8,
  CALSURR_FAILED_PRECONDITION = 9,
  CALSURR_UNIMPLEMENTED = 12,
  CALSURR_INTERNAL = 13,
  CALSURR_UNAVAILABLE = 14,
  CALSURR_UNAUTHENTICATED = 16
};

typedef struct calsurr_client calsurr_client; /* opaque; thread safe: share one per process */

/* Connection and call options; calsurr_options_init fills the documented defaults. */
typedef struct calsurr_options {
  double timeout_seconds;        /* deadline of one predict call, all its requests and retries; 0: none. 30 */
  int max_attempts;              /* attempts per request on UNAVAILABLE (1: no retry). 5 */
  double initial_backoff_seconds; /* first wait before a retry, doubled each time, +-20 % jitter. 0.1 */
  double max_backoff_seconds;    /* cap of one wait. 5 (the Python client's RetryPolicy, the same schedule) */
  int64_t chunk_rows;            /* rows per request for large arrays; 0: the server's preferred batch size */
  int max_in_flight;             /* requests in flight for one large array, and for one model's coalesced calls. 4 */
  double coalesce_window_us;     /* small concurrent calls merge within this window, microseconds; 0: off. 100 */
  int64_t coalesce_max_rows;     /* a call of more rows than this is not coalesced. 64 */
  const char* root_certificates_pem; /* PEM of the CA to trust: TLS on ("": the system's); NULL: plaintext */
  const char* client_certificate_pem; /* with client_key_pem: mutual TLS; NULL: none */
  const char* client_key_pem;
  const char* bearer_token;      /* sent as "authorization: Bearer <token>" metadata; NULL: none */
} calsurr_options; /* the strings are copied at connect */

void calsurr_options_init(calsurr_options* options);

/* Connect (lazily: the channel dials on first use). options NULL: the defaults. */
int calsurr_connect(const char* address, const calsurr_options* options, calsurr_client** client);

/* Predict n_events rows; each output array is caller-owned with n_events doubles, or NULL to skip it. The
 * model's metadata is fetched once and checked before the first request (inputs [-1, n_particles, 4]). */
int calsurr_predict(calsurr_client* client, const char* model, const double* momenta, int64_t n_events,
                    int n_particles, double* mean, double* sigma_stat, double* sigma_syst, double* sigma_tot);

/* The model's card as JSON (calsurr.v1.ModelCardService). Writes at most `size` bytes including the
 * terminating NUL into `buffer` and the full length (without the NUL) into *needed (if not NULL); a buffer
 * too small gives CALSURR_RESOURCE_EXHAUSTED with *needed set, so the caller can retry with a larger one. */
int calsurr_card_json(calsurr_client* client, const char* model, char* buffer, size_t size, size_t* needed);

/* Particles per event the model takes (its input [-1, n, 4]), from its metadata; -1 when it takes any number,
 * CALSURR_FAILED_PRECONDITION when its input is not momenta [-1, n, 4]. */
int calsurr_model_particles(calsurr_client* client, const char* model, int* n_particles);

/* The message of the last call that failed on this thread ("" after a success); valid until the next call
 * on this thread. */
const char* calsurr_last_error(void);

/* Close the client and free it; NULL is allowed. Calls still in flight on other threads must have returned. */
void calsurr_close(calsurr_client* client);

#ifdef __cplusplus
}
#endif

#endif /* CALSURR_CALSURR_H */
