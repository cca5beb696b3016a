// calsurr C++ client: a served surrogate's mean and uncertainties for a generator, over the Open Inference
// Protocol (KServe v2 gRPC, `inference.GRPCInferenceService`) and calsurr's card service.
//
//     calsurr::Client client("127.0.0.1:8001");                 // thread safe: share one per process
//     calsurr::Prediction p = client.predict("gg_gg", momenta, n_events, 4);
//     p.mean[i], p.sigma_stat[i], p.sigma_syst[i], p.sigma_tot[i]
//     std::string card = client.card_json("gg_gg");             // units, training domain, calibration
//
// Momenta are (E, px, py, pz) in GeV, float64, row-major [n_events][n_particles][4], particles in the model's
// process order, incoming first. They go on the wire as raw FP64 bytes and the outputs come back the same way,
// so the values equal an in-process onnxruntime run of the same model.onnx bit for bit.
//
// What a call does, by its size (defaults in ClientOptions):
//  - n_events <= coalesce_max_rows (64), from any number of threads: the coalescer. While the model's lane
//    is idle a call goes out at once; while one of its requests is in flight, concurrent small calls gather
//    for coalesce_window_us (100 us), longer while the lane has max_in_flight (4) requests on their way, and
//    go out as one request; a batch that fills a chunk goes at once. The answers are split back; each caller
//    blocks only until its own rows are answered (or its deadline passes).
//  - larger arrays: split into chunks of chunk_rows (0: the server's preferred batch size from ModelConfig,
//    else its max_batch_size, else 4096; never above max_batch_size) with max_in_flight (4) requests in
//    flight, so the network overlaps the compute; outputs are written in order.
// The model's metadata is fetched once per (model, version) and checked before the first request: a wrong
// n_particles or a model that does not take FP64 [-1, n, 4] fails at once with INVALID_ARGUMENT naming what
// the model expects and what came. Every call has one deadline over all its requests and retries. A request
// that ends UNAVAILABLE is retried with exponential backoff and +-20 % jitter (the Python client's
// RetryPolicy: 5 attempts, 0.1 s doubling to at most 5 s), never past the deadline; nothing else is retried.
//
// Errors: calsurr::Error (a std::runtime_error) with the gRPC status code and the server's message (or the
// client's, for what it catches before sending). The asynchronous forms report through a Status instead.
#ifndef CALSURR_CLIENT_HPP
#define CALSURR_CLIENT_HPP

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(_WIN32)
#define CALSURR_CLIENT_API
#else
#define CALSURR_CLIENT_API __attribute__((visibility("default")))
#endif

namespace calsurr {

/// The library's version, "MAJOR.MINOR.PATCH".
CALSURR_CLIENT_API const char* version() noexcept;

/// gRPC status codes (the same numbers as grpc::StatusCode and the C API's CALSURR_*).
enum class StatusCode : int {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
};

/// "INVALID_ARGUMENT" and so on; "UNKNOWN" for a number that is not a status code.
CALSURR_CLIENT_API const char* status_name(StatusCode code) noexcept;

/// A status code and its message ("" when OK).
class CALSURR_CLIENT_API Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  bool ok() const noexcept { return code_ == StatusCode::OK; }
  StatusCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  /// "NOT_FOUND: unknown model 'x'" ("OK" when OK).
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::OK;
  std::string message_;
};

/// What every synchronous call throws: the gRPC status code and the message. what() is "CODE: message".
class CALSURR_CLIENT_API Error : public std::runtime_error {
 public:
  Error(StatusCode code, const std::string& message);
  explicit Error(const Status& status) : Error(status.code(), status.message()) {}
  StatusCode code() const noexcept { return code_; }
  /// The server's message, or the client's for what it catches itself, without the code.
  const std::string& message() const noexcept { return message_; }
  Status status() const { return Status(code_, message_); }

 private:
  StatusCode code_;
  std::string message_;
};

/// Retries of requests that end UNAVAILABLE (server restarting, connection lost, a model shutting down), with
/// exponential backoff in seconds: the Python client's RetryPolicy (service/client.py), the same schedule.
/// Waits of about 0.1, 0.2, 0.4, 0.8 s between 5 attempts, each spread by +-20 % so that a grid of clients
/// does not come back in lockstep. max_attempts = 1 turns retries off.
struct CALSURR_CLIENT_API RetryPolicy {
  int max_attempts = 5;
  double initial_backoff_seconds = 0.1;
  double max_backoff_seconds = 5.0;
  double multiplier = 2.0;
  double jitter = 0.2;

  /// Seconds to wait before retry number `retry` (1 for the first), given `uniform` in [0, 1):
  /// min(max, initial * multiplier^(retry-1)) * (1 + jitter * (2 * uniform - 1)).
  double backoff(int retry, double uniform) const;
  /// The same with a uniform number drawn from a thread-local generator.
  double backoff(int retry) const;
  /// Throws Error(INVALID_ARGUMENT) unless max_attempts >= 1, 0 <= initial <= max, multiplier >= 1 and
  /// 0 <= jitter < 1.
  void validate() const;
};

/// Transport security. enabled = false: plaintext (the default, as `calsurr serve` today).
struct TlsOptions {
  bool enabled = false;
  std::string root_certificates_pem;   ///< the CA to trust; empty: the system's roots
  std::string client_certificate_pem;  ///< with client_key_pem: mutual TLS
  std::string client_key_pem;
  std::string target_name_override;    ///< check the server's certificate for this name instead (tests)
};

/// Options of a Client; the defaults are what a generator should start with.
struct CALSURR_CLIENT_API ClientOptions {
  double timeout_seconds = 30.0;     ///< default deadline of one call, all its requests and retries; 0: none
  RetryPolicy retry;                 ///< retries on UNAVAILABLE
  int64_t chunk_rows = 0;            ///< rows per request for large arrays; 0: the server's preferred batch size
  int max_in_flight = 4;             ///< requests in flight for one large array, and for one model's coalesced calls
  double coalesce_window_us = 100;   ///< small concurrent calls merge within this window, microseconds; 0: off
  int64_t coalesce_max_rows = 64;    ///< a call of more rows than this is not coalesced
  TlsOptions tls;                    ///< TLS and mutual TLS
  std::string bearer_token;          ///< sent as "authorization: Bearer <token>" call metadata; empty: none
  int max_message_bytes = 64 << 20;  ///< gRPC send and receive limit (the server's default, 64 MiB)

  /// Throws Error(INVALID_ARGUMENT) naming the first option out of range.
  void validate() const;
};

/// Per call: which version answers, and the deadline.
struct CallOptions {
  std::string version;           ///< "": the newest ready version
  double timeout_seconds = -1;   ///< < 0: the client's timeout_seconds; 0: none
};

/// A surrogate's answer in physical units: the mean and its uncertainties (one sigma), one value per event.
struct Prediction {
  std::vector<double> mean;
  std::vector<double> sigma_stat;
  std::vector<double> sigma_syst;
  std::vector<double> sigma_tot;
  std::string model_version;  ///< the version that answered
  std::size_t size() const noexcept { return mean.size(); }
};

/// Caller-owned output arrays of n_events doubles each; nullptr: that output is not wanted (and not sent).
struct OutputBuffers {
  double* mean = nullptr;
  double* sigma_stat = nullptr;
  double* sigma_syst = nullptr;
  double* sigma_tot = nullptr;
};

/// What the client learnt about a model from ModelMetadata and ModelConfig (fetched once, cached).
struct CALSURR_CLIENT_API ModelInfo {
  std::string name;
  std::vector<std::string> versions;
  std::string platform;
  std::string input_name;              ///< "momenta"
  std::string input_datatype;          ///< "FP64"
  std::vector<int64_t> input_shape;    ///< [-1, n, 4]
  std::vector<std::string> outputs;    ///< mean, sigma_stat, sigma_syst, sigma_tot
  int64_t max_batch_size = 0;          ///< from ModelConfig; 0: unknown
  int64_t preferred_batch_size = 0;    ///< from ModelConfig; 0: unknown
  int64_t chunk_rows = 0;              ///< rows per request this client sends the model
  /// Particles per event (input_shape[1]); -1 when the model takes any number, 0 when its input is not
  /// momenta [-1, n, 4].
  int n_particles() const noexcept;
};

/// Counters since the client was made; for tests and benchmarks.
struct ClientStats {
  uint64_t infer_requests = 0;      ///< ModelInfer requests sent, retries included
  uint64_t retries = 0;             ///< attempts after UNAVAILABLE, of every RPC
  uint64_t rows = 0;                ///< rows answered
  uint64_t coalesced_calls = 0;     ///< predict calls answered through the coalescer
  uint64_t coalesced_requests = 0;  ///< requests the coalescer sent for them
};

/// Called once with the outcome of an asynchronous predict, on one of gRPC's threads: return quickly and do
/// not call the client synchronously from it.
using PredictCallback = std::function<void(Status status, Prediction prediction)>;

/// A connection to one server; thread safe (share one per process). The channel dials on first use.
class CALSURR_CLIENT_API Client {
 public:
  /// `address` is host:port (or any gRPC target: "dns:///host:port", "unix:/path"). Throws Error
  /// (INVALID_ARGUMENT) for an empty address or options out of range.
  explicit Client(const std::string& address, const ClientOptions& options = {});
  /// Waits for the asynchronous calls still in flight after cancelling them (their callbacks get CANCELLED).
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// As the constructor, in the shape of Triton's InferenceServerGrpcClient::Create.
  static std::unique_ptr<Client> create(const std::string& address, const ClientOptions& options = {});

  /// The prediction for n_events events of n_particles four-momenta each (momenta: n_events * n_particles * 4
  /// doubles). Throws Error.
  Prediction predict(const std::string& model, const double* momenta, int64_t n_events, int n_particles,
                     const CallOptions& call = {});
  /// The same for a vector of n_events * n_particles * 4 doubles.
  Prediction predict(const std::string& model, const std::vector<double>& momenta, int n_particles,
                     const CallOptions& call = {});
  /// The same into caller-owned arrays (no allocation per call; the C API's path). Throws Error.
  void predict_into(const std::string& model, const double* momenta, int64_t n_events, int n_particles,
                    const OutputBuffers& outputs, const CallOptions& call = {});

  /// Asynchronous predict: returns once the requests are on their way; `callback` gets the outcome. The
  /// momenta must stay valid until the callback has run. Throws Error for what fails before sending (bad
  /// arguments, the metadata check); failures after are the callback's Status. Never coalesced.
  void predict_async(const std::string& model, const double* momenta, int64_t n_events, int n_particles,
                     PredictCallback callback, const CallOptions& call = {});
  /// Asynchronous predict owning its input; every failure (an Error) comes out of the future's get().
  std::future<Prediction> predict_async(const std::string& model, std::vector<double> momenta, int n_particles,
                                        const CallOptions& call = {});

  /// The model's card as JSON (calsurr.v1.ModelCardService): units, training domain, calibration, provenance.
  std::string card_json(const std::string& model, const CallOptions& call = {});
  /// The model's metadata and batching configuration, fetched once and cached.
  ModelInfo model_info(const std::string& model, const CallOptions& call = {});

  bool is_live(const CallOptions& call = {});
  bool is_ready(const CallOptions& call = {});
  bool is_model_ready(const std::string& model, const CallOptions& call = {});

  ClientStats stats() const;
  const std::string& address() const noexcept;
  const ClientOptions& options() const noexcept;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace calsurr

#endif  // CALSURR_CLIENT_HPP
