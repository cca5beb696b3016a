// Status codes, Status, Error and the options' checks: everything of the public API that needs no gRPC.
#include <cmath>
#include <sstream>

#include "calsurr/client.hpp"

#ifndef CALSURR_CLIENT_VERSION
#define CALSURR_CLIENT_VERSION "0.0.0"
#endif

namespace calsurr {

const char* version() noexcept { return CALSURR_CLIENT_VERSION; }

const char* status_name(StatusCode code) noexcept {
  switch (code) {
    case StatusCode::OK: return "OK";
    case StatusCode::CANCELLED: return "CANCELLED";
    case StatusCode::UNKNOWN: return "UNKNOWN";
    case StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case StatusCode::NOT_FOUND: return "NOT_FOUND";
    case StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case StatusCode::ABORTED: return "ABORTED";
    case StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case StatusCode::INTERNAL: return "INTERNAL";
    case StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case StatusCode::DATA_LOSS: return "DATA_LOSS";
    case StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
  }
  return "UNKNOWN";
}

std::string Status::to_string() const {
  if (ok()) return "OK";
  return std::string(status_name(code_)) + ": " + message_;
}

Error::Error(StatusCode code, const std::string& message)
    : std::runtime_error(std::string(status_name(code)) + ": " + message), code_(code), message_(message) {}

void ClientOptions::validate() const {
  auto refuse = [](const std::string& what, auto value) {
    std::ostringstream message;
    message << "option " << what << ", got " << value;
    throw Error(StatusCode::INVALID_ARGUMENT, message.str());
  };
  if (!(timeout_seconds >= 0) || std::isinf(timeout_seconds))
    refuse("timeout_seconds must be >= 0 and finite (0: none)", timeout_seconds);
  retry.validate();
  if (chunk_rows < 0) refuse("chunk_rows must be >= 0 (0: the server's preferred batch size)", chunk_rows);
  if (max_in_flight < 1) refuse("max_in_flight must be >= 1", max_in_flight);
  if (!(coalesce_window_us >= 0) || coalesce_window_us > 1e7)
    refuse("coalesce_window_us must be in [0, 1e7] microseconds (0: off)", coalesce_window_us);
  if (coalesce_max_rows < 0) refuse("coalesce_max_rows must be >= 0", coalesce_max_rows);
  if (max_message_bytes < 1024) refuse("max_message_bytes must be >= 1024", max_message_bytes);
  if (tls.client_certificate_pem.empty() != tls.client_key_pem.empty())
    throw Error(StatusCode::INVALID_ARGUMENT,
                "options tls.client_certificate_pem and tls.client_key_pem go together (mutual TLS), got only one");
  if (!tls.enabled && (!tls.root_certificates_pem.empty() || !tls.client_certificate_pem.empty()))
    throw Error(StatusCode::INVALID_ARGUMENT, "TLS certificates given but tls.enabled is false");
  if (bearer_token.find_first_of("\r\n") != std::string::npos)
    throw Error(StatusCode::INVALID_ARGUMENT, "option bearer_token must not hold a line break");
}

int ModelInfo::n_particles() const noexcept {
  if (input_shape.size() != 3 || (input_shape[2] != 4 && input_shape[2] != -1)) return 0;
  const int64_t n = input_shape[1];
  if (n == -1) return -1;
  if (n <= 0 || n > 1'000'000) return 0;
  return static_cast<int>(n);
}

}  // namespace calsurr
