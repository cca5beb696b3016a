// calsurr::Client over gRPC: the blocking stub for single requests, the callback API for pipelined chunks
// and coalesced batches, grpc::Alarm for the backoff between asynchronous retries.
#include "calsurr/client.hpp"

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "calsurr_card.grpc.pb.h"
#include "chunking.hpp"
#include "coalescer.hpp"
#include "deadline.hpp"
#include "grpc_service.grpc.pb.h"
#include "retry.hpp"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw FP64 contents on the wire are little-endian; this client copies them as they are"
#endif

namespace calsurr {

using detail::Attempts;
using detail::BatchOutputs;
using detail::ChunkPlan;
using detail::Clock;
using detail::CoalescedBatch;
using detail::Coalescer;
using detail::Deadline;

namespace {

constexpr const char* OUTPUT_NAMES[4] = {"mean", "sigma_stat", "sigma_syst", "sigma_tot"};
constexpr int64_t DOUBLES_PER_PARTICLE = 4;  // E, px, py, pz

double* const* output_slots(const OutputBuffers& out, double* (&slots)[4]) {
  slots[0] = out.mean;
  slots[1] = out.sigma_stat;
  slots[2] = out.sigma_syst;
  slots[3] = out.sigma_tot;
  return slots;
}

std::chrono::system_clock::time_point system_deadline(Deadline deadline) {
  const auto left = deadline.at - Clock::now();
  return std::chrono::system_clock::now() + std::chrono::duration_cast<std::chrono::system_clock::duration>(left);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream text;
  text << "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text << (i ? ", " : "") << shape[i];
  text << "]";
  return text.str();
}

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

std::string seconds_text(double seconds) {
  std::ostringstream text;
  text.precision(3);
  text << seconds << " s";
  return text.str();
}

Status from_grpc(const grpc::Status& status) {
  return Status(static_cast<StatusCode>(status.error_code()), status.error_message());
}

/// The raw FP64 bytes of output `name` for `rows` rows, or an error saying what came instead.
Status find_output(const inference::ModelInferResponse& response, const char* name, int64_t rows,
                   const void** data) {
  const std::size_t bytes = static_cast<std::size_t>(rows) * sizeof(double);
  for (int i = 0; i < response.outputs_size(); ++i) {
    const auto& tensor = response.outputs(i);
    if (tensor.name() != name) continue;
    if (tensor.datatype() != "FP64") {
      return Status(StatusCode::INTERNAL, "output '" + std::string(name) + "' of model '" + response.model_name() +
                                              "' came as " + tensor.datatype() + ", expected FP64");
    }
    if (i < response.raw_output_contents_size()) {
      const std::string& raw = response.raw_output_contents(i);
      if (raw.size() != bytes) {
        return Status(StatusCode::INTERNAL, "output '" + std::string(name) + "' holds " + std::to_string(raw.size()) +
                                                " bytes, expected " + std::to_string(bytes) + " (" +
                                                std::to_string(rows) + " FP64 values)");
      }
      *data = raw.data();
      return {};
    }
    if (tensor.contents().fp64_contents_size() == rows) {  // typed contents, from a server other than calsurr
      *data = tensor.contents().fp64_contents().data();
      return {};
    }
    return Status(StatusCode::INTERNAL, "output '" + std::string(name) + "' holds no " + std::to_string(rows) +
                                            " FP64 values in raw or typed contents");
  }
  std::vector<std::string> names;
  for (const auto& tensor : response.outputs()) names.push_back(tensor.name());
  return Status(StatusCode::INTERNAL,
                "the answer has no output '" + std::string(name) + "' (it has: " + joined(names) + ")");
}

/// Copies the wanted outputs of a response into the caller's arrays, from row `offset` on.
Status decode_outputs(const inference::ModelInferResponse& response, int64_t rows, int64_t offset,
                      const OutputBuffers& out) {
  double* slots[4];
  output_slots(out, slots);
  for (int k = 0; k < 4; ++k) {
    if (slots[k] == nullptr) continue;
    const void* data = nullptr;
    Status status = find_output(response, OUTPUT_NAMES[k], rows, &data);
    if (!status.ok()) return status;
    std::memcpy(slots[k] + offset, data, static_cast<std::size_t>(rows) * sizeof(double));
  }
  return {};
}

/// Everything a request to one model needs, shared by the calls of a coalescer lane.
struct Target {
  std::string model;
  std::string version;
  std::shared_ptr<const ModelInfo> info;
  int n_particles = 0;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------------

class Client::Impl {
 public:
  Impl(const std::string& address, const ClientOptions& options);
  ~Impl();

  /// Predicts into `out`; returns the version that answered. Throws Error.
  std::string predict_into(const std::string& model, const double* momenta, int64_t n_events, int n_particles,
                           const OutputBuffers& out, const CallOptions& call);
  /// Starts an asynchronous predict; `done` gets the outcome on a gRPC thread. Throws for what fails first.
  void start_predict(const std::string& model, const double* momenta, int64_t n_events, int n_particles,
                     const OutputBuffers& out, const CallOptions& call,
                     std::function<void(const Status&, const std::string&)> done);
  std::shared_ptr<const ModelInfo> model_info(const std::string& model, const std::string& version,
                                              Deadline deadline, double timeout);
  std::string card_json(const std::string& model, const CallOptions& call);
  bool is_live(const CallOptions& call);
  bool is_ready(const CallOptions& call);
  bool is_model_ready(const std::string& model, const CallOptions& call);
  ClientStats stats() const;

  const std::string address;
  const ClientOptions options;

 private:
  class InferCall;
  struct PredictJob;
  friend class InferCall;

  struct CallTiming {  // what a status message says about a call's deadline
    Deadline deadline;
    double timeout;
  };

  double timeout_of(const CallOptions& call) const {
    return call.timeout_seconds < 0 ? options.timeout_seconds : call.timeout_seconds;
  }
  void prepare(grpc::ClientContext& context, Deadline deadline) const;
  Status give_up(const grpc::Status& status, const char* rpc, int attempts, Clock::time_point started,
                 const CallTiming& timing) const;
  template <class Call>
  void unary(const char* rpc, const CallTiming& timing, Call call);

  Target target(const std::string& model, const CallOptions& call, const double* momenta, int64_t n_events,
                int n_particles, const OutputBuffers& out, Deadline deadline, double timeout);
  inference::ModelInferRequest request_for(const Target& target, int64_t rows, const OutputBuffers& out) const;
  Status infer_single(const Target& target, const double* momenta, int64_t rows, const OutputBuffers& out,
                      const CallTiming& timing, std::string* model_version);
  void send_batch(std::shared_ptr<CoalescedBatch> batch, Coalescer::Complete complete);
  void start_job(std::shared_ptr<PredictJob> job);
  void pump(const std::shared_ptr<PredictJob>& job);

  bool register_call(InferCall* call);
  void unregister_call(InferCall* call);
  void call_ended();

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> stub_;
  std::unique_ptr<calsurr::v1::ModelCardService::Stub> cards_;
  std::string authorization_;

  std::mutex models_mutex_;
  std::map<std::string, std::shared_future<std::shared_ptr<const ModelInfo>>> models_;

  std::unique_ptr<Coalescer> coalescer_;

  std::mutex calls_mutex_;
  std::condition_variable calls_ended_;
  std::unordered_set<InferCall*> calls_;
  int64_t outstanding_ = 0;
  bool closing_ = false;

  std::atomic<uint64_t> infer_requests_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> rows_{0};
};

// One ModelInfer request on the callback API, retried on UNAVAILABLE after a grpc::Alarm; deletes itself.
//
// Locks are held across TryCancel, Alarm::Set and Alarm::Cancel: that cannot deadlock, since gRPC never runs a
// client-side callback inline on the thread that calls them (callback_common.h: "A client-side callback should
// never be run inline"; alarm callbacks go through its executor).
class Client::Impl::InferCall {
 public:
  using Done = std::function<void(const Status&, inference::ModelInferResponse&)>;

  InferCall(Impl& impl, inference::ModelInferRequest request, const CallTiming& timing, Done done)
      : impl_(impl), request_(std::move(request)), timing_(timing), attempts_(impl.options.retry, timing.deadline),
        done_(std::move(done)), started_(Clock::now()) {}

  void start() {
    if (!impl_.register_call(this)) {
      finish(Status(StatusCode::CANCELLED, "the client is closing"));
      return;
    }
    attempt();
  }

  void cancel() {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_ = true;
    if (context_) context_->TryCancel();
    if (alarm_) alarm_->Cancel();
  }

 private:
  void attempt() {
    bool cancelled = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cancelled = cancelled_;
      if (!cancelled) {
        context_ = std::make_unique<grpc::ClientContext>();
        impl_.prepare(*context_, timing_.deadline);
      }
    }
    if (cancelled) {
      finish(Status(StatusCode::CANCELLED, "the client is closing"));
      return;
    }
    attempts_.begin();
    impl_.infer_requests_.fetch_add(1, std::memory_order_relaxed);
    response_.Clear();
    impl_.stub_->async()->ModelInfer(context_.get(), &request_, &response_,
                                     [this](grpc::Status status) { finished(status); });
  }

  void finished(const grpc::Status& status) {
    if (!status.ok()) {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto pause = cancelled_ ? std::nullopt
                                    : attempts_.pause_after(static_cast<StatusCode>(status.error_code()));
      if (pause) {
        impl_.retries_.fetch_add(1, std::memory_order_relaxed);
        alarm_ = std::make_unique<grpc::Alarm>();
        alarm_->Set(std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(*pause),
                    [this](bool fired) {
                      if (fired) {
                        attempt();
                      } else {
                        finish(Status(StatusCode::CANCELLED, "the client is closing"));
                      }
                    });
        return;
      }
    }
    finish(status.ok() ? Status()
                       : impl_.give_up(status, "ModelInfer", attempts_.attempt(), started_, timing_));
  }

  void finish(const Status& status) {
    Impl& impl = impl_;
    impl.unregister_call(this);
    done_(status, response_);
    delete this;
    impl.call_ended();
  }

  Impl& impl_;
  inference::ModelInferRequest request_;
  inference::ModelInferResponse response_;
  CallTiming timing_;
  Attempts attempts_;
  Done done_;
  Clock::time_point started_;
  std::mutex mutex_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::Alarm> alarm_;
  bool cancelled_ = false;
};

// One large array in flight: chunks go out in order, max_in_flight at a time, each answer written in place.
struct Client::Impl::PredictJob {
  Target target;
  const double* momenta = nullptr;
  OutputBuffers out;
  CallTiming timing;
  ChunkPlan plan{0, 1};
  int max_in_flight = 1;
  std::function<void(const Status&, const std::string&)> done;

  std::mutex mutex;
  int64_t next = 0;
  int in_flight = 0;
  bool finished = false;
  Status error;
  std::string model_version;
};

// ---------------------------------------------------------------------------------------------------------

Client::Impl::Impl(const std::string& address_, const ClientOptions& options_)
    : address(address_), options(options_) {
  if (address.empty()) throw Error(StatusCode::INVALID_ARGUMENT, "empty server address; expected host:port");
  options.validate();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  // gRPC re-dials a lost server on its own backoff (1 s growing to 120 s by default); matched to ours, as the
  // Python client does, so that a retry finds the channel dialling again instead of failing on the old failure.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              std::max(1, static_cast<int>(std::lround(options.retry.initial_backoff_seconds * 1000))));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              std::max(1, static_cast<int>(std::lround(options.retry.max_backoff_seconds * 1000))));
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls.enabled) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls.root_certificates_pem;
    ssl.pem_cert_chain = options.tls.client_certificate_pem;
    ssl.pem_private_key = options.tls.client_key_pem;
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls.target_name_override.empty()) args.SetSslTargetNameOverride(options.tls.target_name_override);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  if (!options.bearer_token.empty()) authorization_ = "Bearer " + options.bearer_token;
  channel_ = grpc::CreateCustomChannel(address, credentials, args);
  stub_ = inference::GRPCInferenceService::NewStub(channel_);
  cards_ = calsurr::v1::ModelCardService::NewStub(channel_);
  if (options.coalesce_window_us > 0 && options.coalesce_max_rows > 0) {
    const auto window = std::chrono::nanoseconds(static_cast<int64_t>(options.coalesce_window_us * 1000));
    coalescer_ = std::make_unique<Coalescer>(
        window,
        [this](std::shared_ptr<CoalescedBatch> batch, Coalescer::Complete complete) {
          send_batch(std::move(batch), std::move(complete));
        },
        options.max_in_flight);
  }
}

Client::Impl::~Impl() {
  std::unique_lock<std::mutex> lock(calls_mutex_);
  closing_ = true;
  for (InferCall* call : calls_) call->cancel();
  calls_ended_.wait(lock, [this] { return outstanding_ == 0; });
}

bool Client::Impl::register_call(InferCall* call) {
  std::lock_guard<std::mutex> lock(calls_mutex_);
  ++outstanding_;
  if (closing_) return false;
  calls_.insert(call);
  return true;
}

void Client::Impl::unregister_call(InferCall* call) {
  std::lock_guard<std::mutex> lock(calls_mutex_);
  calls_.erase(call);
}

void Client::Impl::call_ended() {
  std::lock_guard<std::mutex> lock(calls_mutex_);
  if (--outstanding_ == 0) calls_ended_.notify_all();
}

void Client::Impl::prepare(grpc::ClientContext& context, Deadline deadline) const {
  if (!deadline.is_none()) context.set_deadline(system_deadline(deadline));
  if (!authorization_.empty()) context.AddMetadata("authorization", authorization_);
}

Status Client::Impl::give_up(const grpc::Status& status, const char* rpc, int attempts, Clock::time_point started,
                             const CallTiming& timing) const {
  Status result = from_grpc(status);
  if (result.code() != StatusCode::UNAVAILABLE && result.code() != StatusCode::DEADLINE_EXCEEDED) return result;
  std::ostringstream message;
  message << result.message() << " (" << rpc << " to " << address << ": " << attempts
          << (attempts == 1 ? " attempt" : " attempts") << " in "
          << seconds_text(std::chrono::duration<double>(Clock::now() - started).count());
  if (!timing.deadline.is_none()) message << ", timeout " << seconds_text(timing.timeout);
  if (result.code() == StatusCode::UNAVAILABLE && attempts < options.retry.max_attempts &&
      !timing.deadline.is_none()) {
    message << "; the next retry would pass the deadline";
  }
  message << ")";
  return Status(result.code(), message.str());
}

template <class Call>
void Client::Impl::unary(const char* rpc, const CallTiming& timing, Call call) {
  Attempts attempts(options.retry, timing.deadline);
  const auto started = Clock::now();
  while (true) {
    grpc::ClientContext context;
    prepare(context, timing.deadline);
    attempts.begin();
    const grpc::Status status = call(context);
    if (status.ok()) return;
    const auto pause = attempts.pause_after(static_cast<StatusCode>(status.error_code()));
    if (!pause) throw Error(give_up(status, rpc, attempts.attempt(), started, timing));
    retries_.fetch_add(1, std::memory_order_relaxed);
    std::this_thread::sleep_for(*pause);
  }
}

std::shared_ptr<const ModelInfo> Client::Impl::model_info(const std::string& model, const std::string& version,
                                                          Deadline deadline, double timeout) {
  if (model.empty()) throw Error(StatusCode::INVALID_ARGUMENT, "empty model name");
  const std::string key = model + '\n' + version;
  std::promise<std::shared_ptr<const ModelInfo>> promise;
  std::shared_future<std::shared_ptr<const ModelInfo>> future;
  bool fetch = false;
  {
    std::lock_guard<std::mutex> lock(models_mutex_);
    auto found = models_.find(key);
    if (found != models_.end()) {
      future = found->second;
    } else {
      future = promise.get_future().share();
      models_.emplace(key, future);
      fetch = true;
    }
  }
  if (!fetch) return future.get();  // fetched, or being fetched by another thread: its outcome
  try {
    const CallTiming timing{deadline, timeout};
    inference::ModelMetadataRequest request;
    request.set_name(model);
    request.set_version(version);
    inference::ModelMetadataResponse metadata;
    unary("ModelMetadata", timing,
          [&](grpc::ClientContext& context) { return stub_->ModelMetadata(&context, request, &metadata); });
    auto info = std::make_shared<ModelInfo>();
    info->name = metadata.name();
    info->platform = metadata.platform();
    info->versions.assign(metadata.versions().begin(), metadata.versions().end());
    if (metadata.inputs_size() > 0) {
      info->input_name = metadata.inputs(0).name();
      info->input_datatype = metadata.inputs(0).datatype();
      info->input_shape.assign(metadata.inputs(0).shape().begin(), metadata.inputs(0).shape().end());
    }
    for (const auto& output : metadata.outputs()) info->outputs.push_back(output.name());
    if (metadata.inputs_size() != 1) {
      std::vector<std::string> names;
      for (const auto& input : metadata.inputs()) names.push_back(input.name());
      info->input_name.clear();
      info->input_shape.clear();
      info->input_datatype = std::to_string(metadata.inputs_size()) + " inputs (" + joined(names) + ")";
    }
    // The batching configuration is Triton's ModelConfig: optional, a v2 server without it gets the defaults.
    inference::ModelConfigRequest config_request;
    config_request.set_name(model);
    config_request.set_version(version);
    inference::ModelConfigResponse config;
    grpc::ClientContext context;
    prepare(context, deadline);
    if (stub_->ModelConfig(&context, config_request, &config).ok()) {
      info->max_batch_size = config.config().max_batch_size();
      if (config.config().has_dynamic_batching() && config.config().dynamic_batching().preferred_batch_size_size() > 0)
        info->preferred_batch_size = config.config().dynamic_batching().preferred_batch_size(0);
    }
    const int particles = info->n_particles();
    info->chunk_rows = detail::chunk_rows_for(options.chunk_rows, info->preferred_batch_size, info->max_batch_size,
                                              particles > 0 ? particles * DOUBLES_PER_PARTICLE * 8 : 0,
                                              options.max_message_bytes);
    std::shared_ptr<const ModelInfo> result = info;
    promise.set_value(result);
    return result;
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(models_mutex_);
      models_.erase(key);  // a failure is not cached: the model may load, the server may come back
    }
    promise.set_exception(std::current_exception());
    throw;
  }
}

Target Client::Impl::target(const std::string& model, const CallOptions& call, const double* momenta,
                            int64_t n_events, int n_particles, const OutputBuffers& out, Deadline deadline,
                            double timeout) {
  if (model.empty()) throw Error(StatusCode::INVALID_ARGUMENT, "empty model name");
  if (n_events < 0) throw Error(StatusCode::INVALID_ARGUMENT, "n_events must be >= 0, got " + std::to_string(n_events));
  if (n_particles < 1)
    throw Error(StatusCode::INVALID_ARGUMENT, "n_particles must be >= 1, got " + std::to_string(n_particles));
  if (momenta == nullptr && n_events > 0)
    throw Error(StatusCode::INVALID_ARGUMENT, "momenta is NULL for " + std::to_string(n_events) + " events");
  Target target{model, call.version, model_info(model, call.version, deadline, timeout), n_particles};
  const ModelInfo& info = *target.info;
  const std::string got = shape_text({n_events, n_particles, DOUBLES_PER_PARTICLE});
  const std::string who = "model '" + model + "' input '" + info.input_name + "'";
  if (info.input_name.empty()) {
    throw Error(StatusCode::INVALID_ARGUMENT, "model '" + model + "' takes " + info.input_datatype +
                                                  "; this client sends one input, momenta " + got);
  }
  if (info.input_datatype != "FP64") {
    throw Error(StatusCode::INVALID_ARGUMENT,
                who + " expects datatype " + info.input_datatype + ", got FP64 (this client sends float64 momenta)");
  }
  const int expected = info.n_particles();
  if (expected == 0 || (expected > 0 && expected != n_particles) || info.input_shape[0] != -1) {
    throw Error(StatusCode::INVALID_ARGUMENT, who + " expects shape " + shape_text(info.input_shape) + ", got " + got);
  }
  double* slots[4];
  output_slots(out, slots);
  for (int k = 0; k < 4; ++k) {
    const bool served = std::find(info.outputs.begin(), info.outputs.end(), OUTPUT_NAMES[k]) != info.outputs.end();
    if (slots[k] != nullptr && !served)
      throw Error(StatusCode::INVALID_ARGUMENT, "model '" + model + "' has no output '" + OUTPUT_NAMES[k] +
                                                    "' (outputs: " + joined(info.outputs) + ")");
  }
  return target;
}

inference::ModelInferRequest Client::Impl::request_for(const Target& target, int64_t rows,
                                                       const OutputBuffers& out) const {
  inference::ModelInferRequest request;
  request.set_model_name(target.model);
  request.set_model_version(target.version);
  auto* input = request.add_inputs();
  input->set_name(target.info->input_name);
  input->set_datatype("FP64");
  input->add_shape(rows);
  input->add_shape(target.n_particles);
  input->add_shape(DOUBLES_PER_PARTICLE);
  double* slots[4];
  output_slots(out, slots);
  const int wanted = static_cast<int>(std::count_if(slots, slots + 4, [](double* p) { return p != nullptr; }));
  if (wanted < 4) {  // all four is the server's default: no list
    for (int k = 0; k < 4; ++k)
      if (slots[k] != nullptr) request.add_outputs()->set_name(OUTPUT_NAMES[k]);
    if (wanted == 0) request.add_outputs()->set_name(OUTPUT_NAMES[0]);
  }
  return request;
}

Status Client::Impl::infer_single(const Target& target, const double* momenta, int64_t rows,
                                  const OutputBuffers& out, const CallTiming& timing, std::string* model_version) {
  inference::ModelInferRequest request = request_for(target, rows, out);
  request.add_raw_input_contents()->assign(reinterpret_cast<const char*>(momenta),
                                           static_cast<std::size_t>(rows * target.n_particles * DOUBLES_PER_PARTICLE) *
                                               sizeof(double));
  inference::ModelInferResponse response;
  try {
    unary("ModelInfer", timing, [&](grpc::ClientContext& context) {
      infer_requests_.fetch_add(1, std::memory_order_relaxed);
      return stub_->ModelInfer(&context, request, &response);
    });
  } catch (const Error& error) {
    return error.status();
  }
  Status status = decode_outputs(response, rows, 0, out);
  if (status.ok()) {
    rows_.fetch_add(static_cast<uint64_t>(rows), std::memory_order_relaxed);
    if (model_version != nullptr) *model_version = response.model_version();
  }
  return status;
}

void Client::Impl::send_batch(std::shared_ptr<CoalescedBatch> batch, Coalescer::Complete complete) {
  // The lane's target rides on the batch's first caller: every call of a lane has the same.
  auto target = std::static_pointer_cast<const Target>(batch->context);
  inference::ModelInferRequest request = request_for(*target, batch->rows, OutputBuffers{});
  request.clear_outputs();  // all four: every caller may want any of them
  request.add_raw_input_contents(std::move(batch->input));
  const int64_t rows = batch->rows;
  const CallTiming timing{batch->deadline, batch->deadline.remaining_seconds()};
  auto* call = new InferCall(*this, std::move(request), timing,
                             [this, rows, complete](const Status& status, inference::ModelInferResponse& response) {
                               BatchOutputs outputs;
                               Status result = status;
                               const void** slots[4] = {&outputs.mean, &outputs.sigma_stat, &outputs.sigma_syst,
                                                        &outputs.sigma_tot};
                               for (int k = 0; k < 4 && result.ok(); ++k)
                                 result = find_output(response, OUTPUT_NAMES[k], rows, slots[k]);
                               if (result.ok()) rows_.fetch_add(static_cast<uint64_t>(rows), std::memory_order_relaxed);
                               complete(result, response.model_version(), outputs);
                             });
  call->start();
}

void Client::Impl::start_job(std::shared_ptr<PredictJob> job) { pump(job); }

void Client::Impl::pump(const std::shared_ptr<PredictJob>& job) {
  std::vector<InferCall*> starts;
  bool finish = false;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    while (job->error.ok() && job->in_flight < job->max_in_flight && job->next < job->plan.count()) {
      const detail::Chunk chunk = job->plan.chunk(job->next++);
      ++job->in_flight;
      const Target& target = job->target;
      inference::ModelInferRequest request = request_for(target, chunk.rows, job->out);
      const int64_t row_doubles = target.n_particles * DOUBLES_PER_PARTICLE;
      request.add_raw_input_contents()->assign(reinterpret_cast<const char*>(job->momenta + chunk.offset * row_doubles),
                                               static_cast<std::size_t>(chunk.rows * row_doubles) * sizeof(double));
      const int64_t index = job->next - 1;
      starts.push_back(new InferCall(
          *this, std::move(request), job->timing,
          [this, job, chunk, index](const Status& status, inference::ModelInferResponse& response) {
            Status result = status.ok() ? decode_outputs(response, chunk.rows, chunk.offset, job->out) : status;
            {
              std::lock_guard<std::mutex> lock(job->mutex);
              --job->in_flight;
              if (result.ok()) {
                rows_.fetch_add(static_cast<uint64_t>(chunk.rows), std::memory_order_relaxed);
                if (job->model_version.empty()) job->model_version = response.model_version();
              } else if (job->error.ok()) {
                std::ostringstream where;
                where << result.message() << " (rows " << chunk.offset << ".." << chunk.offset + chunk.rows - 1
                      << " of " << job->plan.rows() << ", request " << index + 1 << " of " << job->plan.count() << ")";
                job->error = job->plan.count() > 1 ? Status(result.code(), where.str()) : result;
              }
            }
            pump(job);
          }));
    }
    if (!job->finished && job->in_flight == 0 && (job->next == job->plan.count() || !job->error.ok())) {
      job->finished = true;
      finish = true;
    }
  }
  for (InferCall* call : starts) call->start();
  if (finish) job->done(job->error, job->model_version);
}

std::string Client::Impl::predict_into(const std::string& model, const double* momenta, int64_t n_events,
                                       int n_particles, const OutputBuffers& out, const CallOptions& call) {
  const double timeout = timeout_of(call);
  const CallTiming timing{Deadline::after(timeout), timeout};
  Target resolved = target(model, call, momenta, n_events, n_particles, out, timing.deadline, timeout);
  std::string version;
  if (n_events == 0) return version;
  const int64_t chunk_rows = resolved.info->chunk_rows;
  if (coalescer_ && n_events <= options.coalesce_max_rows && n_events <= chunk_rows) {
    const std::string key = model + '\n' + call.version + '\n' + std::to_string(n_particles);
    auto context = [&] { return std::static_pointer_cast<const void>(std::make_shared<const Target>(resolved)); };
    auto alone = [&] { return infer_single(resolved, momenta, n_events, out, timing, &version); };
    Status status = coalescer_->run(key, context, momenta, n_events, n_particles * DOUBLES_PER_PARTICLE, chunk_rows,
                                    out, timing.deadline, &version, alone);
    if (!status.ok()) throw Error(status);
    return version;
  }
  if (n_events <= chunk_rows) {
    Status status = infer_single(resolved, momenta, n_events, out, timing, &version);
    if (!status.ok()) throw Error(status);
    return version;
  }
  // The promise outlives this frame in the job: set_value may still be returning when get() has.
  auto outcome = std::make_shared<std::promise<std::pair<Status, std::string>>>();
  auto future = outcome->get_future();
  auto job = std::make_shared<PredictJob>();
  job->target = std::move(resolved);
  job->momenta = momenta;
  job->out = out;
  job->timing = timing;
  job->plan = ChunkPlan(n_events, chunk_rows);
  job->max_in_flight = options.max_in_flight;
  job->done = [outcome](const Status& status, const std::string& answered) { outcome->set_value({status, answered}); };
  start_job(job);
  auto [status, answered] = future.get();
  if (!status.ok()) throw Error(status);
  return answered;
}

void Client::Impl::start_predict(const std::string& model, const double* momenta, int64_t n_events,
                                 int n_particles, const OutputBuffers& out, const CallOptions& call,
                                 std::function<void(const Status&, const std::string&)> done) {
  const double timeout = timeout_of(call);
  const CallTiming timing{Deadline::after(timeout), timeout};
  Target resolved = target(model, call, momenta, n_events, n_particles, out, timing.deadline, timeout);
  if (n_events == 0) {
    done(Status(), "");
    return;
  }
  auto job = std::make_shared<PredictJob>();
  job->target = std::move(resolved);
  job->momenta = momenta;
  job->out = out;
  job->timing = timing;
  job->plan = ChunkPlan(n_events, job->target.info->chunk_rows);
  job->max_in_flight = options.max_in_flight;
  job->done = std::move(done);
  start_job(job);
}

std::string Client::Impl::card_json(const std::string& model, const CallOptions& call) {
  if (model.empty()) throw Error(StatusCode::INVALID_ARGUMENT, "empty model name");
  const double timeout = timeout_of(call);
  calsurr::v1::ModelCardRequest request;
  request.set_name(model);
  request.set_version(call.version);
  calsurr::v1::ModelCardResponse response;
  unary("ModelCard", {Deadline::after(timeout), timeout},
        [&](grpc::ClientContext& context) { return cards_->ModelCard(&context, request, &response); });
  return response.card_json();
}

bool Client::Impl::is_live(const CallOptions& call) {
  const double timeout = timeout_of(call);
  inference::ServerLiveResponse response;
  unary("ServerLive", {Deadline::after(timeout), timeout}, [&](grpc::ClientContext& context) {
    return stub_->ServerLive(&context, inference::ServerLiveRequest(), &response);
  });
  return response.live();
}

bool Client::Impl::is_ready(const CallOptions& call) {
  const double timeout = timeout_of(call);
  inference::ServerReadyResponse response;
  unary("ServerReady", {Deadline::after(timeout), timeout}, [&](grpc::ClientContext& context) {
    return stub_->ServerReady(&context, inference::ServerReadyRequest(), &response);
  });
  return response.ready();
}

bool Client::Impl::is_model_ready(const std::string& model, const CallOptions& call) {
  const double timeout = timeout_of(call);
  inference::ModelReadyRequest request;
  request.set_name(model);
  request.set_version(call.version);
  inference::ModelReadyResponse response;
  unary("ModelReady", {Deadline::after(timeout), timeout},
        [&](grpc::ClientContext& context) { return stub_->ModelReady(&context, request, &response); });
  return response.ready();
}

ClientStats Client::Impl::stats() const {
  ClientStats stats;
  stats.infer_requests = infer_requests_.load();
  stats.retries = retries_.load();
  stats.rows = rows_.load();
  if (coalescer_) {
    const auto counters = coalescer_->counters();
    stats.coalesced_calls = counters.calls;
    stats.coalesced_requests = counters.batches + counters.alone;
  }
  return stats;
}

// ---------------------------------------------------------------------------------------------------------

namespace {

void check_vector(const std::vector<double>& momenta, int n_particles) {
  if (n_particles < 1)
    throw Error(StatusCode::INVALID_ARGUMENT, "n_particles must be >= 1, got " + std::to_string(n_particles));
  const std::size_t row = static_cast<std::size_t>(n_particles) * DOUBLES_PER_PARTICLE;
  if (momenta.size() % row != 0) {
    throw Error(StatusCode::INVALID_ARGUMENT, "momenta holds " + std::to_string(momenta.size()) +
                                                  " doubles, not a multiple of n_particles * 4 = " +
                                                  std::to_string(row));
  }
}

std::shared_ptr<Prediction> sized(int64_t n_events, OutputBuffers& out) {
  auto prediction = std::make_shared<Prediction>();
  const auto n = static_cast<std::size_t>(std::max<int64_t>(0, n_events));
  prediction->mean.resize(n);
  prediction->sigma_stat.resize(n);
  prediction->sigma_syst.resize(n);
  prediction->sigma_tot.resize(n);
  out = {prediction->mean.data(), prediction->sigma_stat.data(), prediction->sigma_syst.data(),
         prediction->sigma_tot.data()};
  return prediction;
}

}  // namespace

Client::Client(const std::string& address, const ClientOptions& options)
    : impl_(std::make_unique<Impl>(address, options)) {}

Client::~Client() = default;

std::unique_ptr<Client> Client::create(const std::string& address, const ClientOptions& options) {
  return std::make_unique<Client>(address, options);
}

Prediction Client::predict(const std::string& model, const double* momenta, int64_t n_events, int n_particles,
                           const CallOptions& call) {
  if (n_events < 0) throw Error(StatusCode::INVALID_ARGUMENT, "n_events must be >= 0, got " + std::to_string(n_events));
  OutputBuffers out;
  auto prediction = sized(n_events, out);
  prediction->model_version = impl_->predict_into(model, momenta, n_events, n_particles, out, call);
  return std::move(*prediction);
}

Prediction Client::predict(const std::string& model, const std::vector<double>& momenta, int n_particles,
                           const CallOptions& call) {
  check_vector(momenta, n_particles);
  const auto n_events = static_cast<int64_t>(momenta.size() / (static_cast<std::size_t>(n_particles) * 4));
  return predict(model, momenta.data(), n_events, n_particles, call);
}

void Client::predict_into(const std::string& model, const double* momenta, int64_t n_events, int n_particles,
                          const OutputBuffers& outputs, const CallOptions& call) {
  impl_->predict_into(model, momenta, n_events, n_particles, outputs, call);
}

void Client::predict_async(const std::string& model, const double* momenta, int64_t n_events, int n_particles,
                           PredictCallback callback, const CallOptions& call) {
  if (!callback) throw Error(StatusCode::INVALID_ARGUMENT, "predict_async needs a callback");
  if (n_events < 0) throw Error(StatusCode::INVALID_ARGUMENT, "n_events must be >= 0, got " + std::to_string(n_events));
  OutputBuffers out;
  auto prediction = sized(n_events, out);
  impl_->start_predict(model, momenta, n_events, n_particles, out, call,
                       [prediction, callback](const Status& status, const std::string& version) {
                         prediction->model_version = version;
                         callback(status, status.ok() ? std::move(*prediction) : Prediction{});
                       });
}

std::future<Prediction> Client::predict_async(const std::string& model, std::vector<double> momenta,
                                              int n_particles, const CallOptions& call) {
  auto promise = std::make_shared<std::promise<Prediction>>();
  auto future = promise->get_future();
  try {
    check_vector(momenta, n_particles);
    auto input = std::make_shared<std::vector<double>>(std::move(momenta));
    const auto n_events = static_cast<int64_t>(input->size() / (static_cast<std::size_t>(n_particles) * 4));
    OutputBuffers out;
    auto prediction = sized(n_events, out);
    impl_->start_predict(model, input->data(), n_events, n_particles, out, call,
                         [promise, prediction, input](const Status& status, const std::string& version) {
                           if (status.ok()) {
                             prediction->model_version = version;
                             promise->set_value(std::move(*prediction));
                           } else {
                             promise->set_exception(std::make_exception_ptr(Error(status)));
                           }
                         });
  } catch (...) {
    promise->set_exception(std::current_exception());
  }
  return future;
}

std::string Client::card_json(const std::string& model, const CallOptions& call) {
  return impl_->card_json(model, call);
}

ModelInfo Client::model_info(const std::string& model, const CallOptions& call) {
  const double timeout = call.timeout_seconds < 0 ? impl_->options.timeout_seconds : call.timeout_seconds;
  return *impl_->model_info(model, call.version, Deadline::after(timeout), timeout);
}

bool Client::is_live(const CallOptions& call) { return impl_->is_live(call); }
bool Client::is_ready(const CallOptions& call) { return impl_->is_ready(call); }
bool Client::is_model_ready(const std::string& model, const CallOptions& call) {
  return impl_->is_model_ready(model, call);
}
ClientStats Client::stats() const { return impl_->stats(); }
const std::string& Client::address() const noexcept { return impl_->address; }
const ClientOptions& Client::options() const noexcept { return impl_->options; }

}  // namespace calsurr
