// The C API over calsurr::Client: status codes and a thread-local message; no exception crosses it.
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "calsurr/client.hpp"

// Export the C functions from a library built with hidden visibility, without annotating the public header.
#pragma GCC visibility push(default)
#include "calsurr/calsurr.h"
#pragma GCC visibility pop

struct calsurr_client {
  explicit calsurr_client(const std::string& address, const calsurr::ClientOptions& options)
      : client(address, options) {}
  calsurr::Client client;
};

namespace {

thread_local std::string last_error;

int fail(int code, const std::string& message) {
  try {
    last_error = message;
  } catch (...) {
    last_error.clear();  // no memory for the message: the code says enough
  }
  return code;
}

int succeed() {
  last_error.clear();
  return CALSURR_OK;
}

// Runs `body` and turns whatever it throws into a status code and the thread's message.
template <class Body>
int guarded(Body&& body) noexcept {
  try {
    body();
    return succeed();
  } catch (const calsurr::Error& error) {
    return fail(static_cast<int>(error.code()), error.message());
  } catch (const std::bad_alloc&) {
    return fail(CALSURR_RESOURCE_EXHAUSTED, "out of memory in the calsurr client");
  } catch (const std::exception& error) {
    return fail(CALSURR_INTERNAL, std::string("calsurr client: ") + error.what());
  } catch (...) {
    return fail(CALSURR_INTERNAL, "calsurr client: unknown exception");
  }
}

int null_argument(const char* function, const char* argument) {
  return fail(CALSURR_INVALID_ARGUMENT, std::string(function) + ": " + argument + " is NULL");
}

calsurr::ClientOptions to_cpp(const calsurr_options& c) {
  calsurr::ClientOptions options;
  options.timeout_seconds = c.timeout_seconds;
  options.retry.max_attempts = c.max_attempts;
  options.retry.initial_backoff_seconds = c.initial_backoff_seconds;
  options.retry.max_backoff_seconds = c.max_backoff_seconds;
  options.chunk_rows = c.chunk_rows;
  options.max_in_flight = c.max_in_flight;
  options.coalesce_window_us = c.coalesce_window_us;
  options.coalesce_max_rows = c.coalesce_max_rows;
  if (c.root_certificates_pem != nullptr) {
    options.tls.enabled = true;
    options.tls.root_certificates_pem = c.root_certificates_pem;
  }
  if (c.client_certificate_pem != nullptr || c.client_key_pem != nullptr) {
    if (c.root_certificates_pem == nullptr) {
      throw calsurr::Error(calsurr::StatusCode::INVALID_ARGUMENT,
                           "calsurr_connect: a client certificate needs root_certificates_pem (TLS)");
    }
    options.tls.client_certificate_pem = c.client_certificate_pem != nullptr ? c.client_certificate_pem : "";
    options.tls.client_key_pem = c.client_key_pem != nullptr ? c.client_key_pem : "";
  }
  if (c.bearer_token != nullptr) options.bearer_token = c.bearer_token;
  return options;
}

}  // namespace

extern "C" {

void calsurr_options_init(calsurr_options* options) {
  if (options == nullptr) return;
  const calsurr::ClientOptions defaults;
  options->timeout_seconds = defaults.timeout_seconds;
  options->max_attempts = defaults.retry.max_attempts;
  options->initial_backoff_seconds = defaults.retry.initial_backoff_seconds;
  options->max_backoff_seconds = defaults.retry.max_backoff_seconds;
  options->chunk_rows = defaults.chunk_rows;
  options->max_in_flight = defaults.max_in_flight;
  options->coalesce_window_us = defaults.coalesce_window_us;
  options->coalesce_max_rows = defaults.coalesce_max_rows;
  options->root_certificates_pem = nullptr;
  options->client_certificate_pem = nullptr;
  options->client_key_pem = nullptr;
  options->bearer_token = nullptr;
}

int calsurr_connect(const char* address, const calsurr_options* options, calsurr_client** client) {
  if (client == nullptr) return null_argument("calsurr_connect", "client (the handle's address)");
  *client = nullptr;
  if (address == nullptr) return null_argument("calsurr_connect", "address");
  return guarded([&] {
    calsurr_options defaults;
    calsurr_options_init(&defaults);
    *client = new calsurr_client(address, to_cpp(options != nullptr ? *options : defaults));
  });
}

int calsurr_predict(calsurr_client* client, const char* model, const double* momenta, int64_t n_events,
                    int n_particles, double* mean, double* sigma_stat, double* sigma_syst, double* sigma_tot) {
  if (client == nullptr) return null_argument("calsurr_predict", "client");
  if (model == nullptr) return null_argument("calsurr_predict", "model");
  if (momenta == nullptr && n_events > 0) return null_argument("calsurr_predict", "momenta");
  return guarded([&] {
    client->client.predict_into(model, momenta, n_events, n_particles, {mean, sigma_stat, sigma_syst, sigma_tot});
  });
}

int calsurr_card_json(calsurr_client* client, const char* model, char* buffer, size_t size, size_t* needed) {
  if (client == nullptr) return null_argument("calsurr_card_json", "client");
  if (model == nullptr) return null_argument("calsurr_card_json", "model");
  if (buffer == nullptr && size > 0) return null_argument("calsurr_card_json", "buffer (with size > 0)");
  std::string card;
  const int status = guarded([&] { card = client->client.card_json(model); });
  if (status != CALSURR_OK) return status;
  if (needed != nullptr) *needed = card.size();
  if (size < card.size() + 1) {
    if (buffer != nullptr && size > 0) buffer[0] = '\0';
    return fail(CALSURR_RESOURCE_EXHAUSTED, "calsurr_card_json: the card of '" + std::string(model) + "' needs " +
                                                std::to_string(card.size() + 1) + " bytes, the buffer holds " +
                                                std::to_string(size));
  }
  std::memcpy(buffer, card.c_str(), card.size() + 1);
  return CALSURR_OK;
}

int calsurr_model_particles(calsurr_client* client, const char* model, int* n_particles) {
  if (client == nullptr) return null_argument("calsurr_model_particles", "client");
  if (model == nullptr) return null_argument("calsurr_model_particles", "model");
  if (n_particles == nullptr) return null_argument("calsurr_model_particles", "n_particles");
  return guarded([&] {
    const calsurr::ModelInfo info = client->client.model_info(model);
    const int n = info.n_particles();
    if (n == 0) {
      std::string shape;
      for (auto dim : info.input_shape) shape += (shape.empty() ? "" : ", ") + std::to_string(dim);
      throw calsurr::Error(calsurr::StatusCode::FAILED_PRECONDITION,
                           "model '" + std::string(model) + "' does not take momenta [-1, n, 4]: its input '" +
                               info.input_name + "' is " + info.input_datatype + " [" + shape + "]");
    }
    *n_particles = n;
  });
}

const char* calsurr_last_error(void) { return last_error.c_str(); }

void calsurr_close(calsurr_client* client) {
  try {
    delete client;
  } catch (...) {  // a destructor does not throw; belt and braces at a C boundary
  }
}

}  // extern "C"
