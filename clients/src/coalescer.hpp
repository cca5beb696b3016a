// The coalescer: small calls from many threads merged into one request, the answers split back.
#ifndef CALSURR_SRC_COALESCER_HPP
#define CALSURR_SRC_COALESCER_HPP

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "calsurr/client.hpp"
#include "deadline.hpp"

namespace calsurr::detail {

/// One caller's rows inside a merged request, and where its answer goes.
struct CoalescedSlot {
  int64_t offset = 0;  ///< first row in the batch
  int64_t rows = 0;
  OutputBuffers outputs;  ///< the caller's own arrays; written only while the caller still waits
  std::mutex mutex;
  std::condition_variable answered;
  bool done = false;
  bool abandoned = false;  ///< the caller's deadline passed first: its arrays must not be touched
  bool merged = false;     ///< answered together with other callers' rows
  Status status;
  std::string model_version;
};

struct CoalescerLane;

/// A merged request: the momenta of its callers, one after the other, as raw FP64 bytes.
struct CoalescedBatch {
  CoalescerLane* lane = nullptr;
  std::string input;
  int64_t rows = 0;
  int64_t row_doubles = 0;  ///< doubles per row: n_particles * 4
  Deadline deadline;        ///< the latest of the callers' deadlines: the request serves them all
  std::vector<std::shared_ptr<CoalescedSlot>> slots;
  std::shared_ptr<const void> context;  ///< what the sender needs to know about the lane (model, version)
};

/// The answer to a merged request: `rows` FP64 values per output (raw bytes, as the wire has them), each
/// caller's rows at its slot's offset.
struct BatchOutputs {
  const void* mean = nullptr;
  const void* sigma_stat = nullptr;
  const void* sigma_syst = nullptr;
  const void* sigma_tot = nullptr;
};

struct CoalescerLane {
  std::shared_ptr<CoalescedBatch> open;  ///< the batch gathering callers, if any
  int in_flight = 0;                     ///< requests of this lane on their way (merged or alone)
  std::condition_variable window;        ///< wakes the leader of `open` when someone else sends it
};

class Coalescer {
 public:
  /// Reports a merged request's outcome; `outputs` are read only during the call. Call it exactly once.
  using Complete = std::function<void(const Status& status, const std::string& model_version,
                                      const BatchOutputs& outputs)>;
  /// Sends a merged request asynchronously (or inline): every output must come back for all its rows.
  using Send = std::function<void(std::shared_ptr<CoalescedBatch> batch, Complete complete)>;

  struct Counters {
    uint64_t calls = 0;    ///< calls through run()
    uint64_t batches = 0;  ///< merged requests sent
    uint64_t alone = 0;    ///< calls sent by themselves: their lane was idle, or their merged request was refused
  };

  /// `max_in_flight`: requests of one lane on their way at most before its open batch waits for room (a batch
  /// that reaches `limit_rows` goes at once regardless).
  Coalescer(std::chrono::nanoseconds window, Send send, int max_in_flight = 4)
      : window_(window), send_(std::move(send)), max_in_flight_(std::max(1, max_in_flight)) {}

  /// Answers one small call: blocks until its rows are answered or its deadline passes.
  ///
  /// `key` names the lane (model, version, particles): only calls of one lane merge. While the lane is idle
  /// (no batch gathering, nothing in flight) the call goes out by itself at once, through `alone`, run on this
  /// thread. Otherwise it joins the lane's open batch, or opens one and leads it: the leader sends the batch when
  /// the window has passed since it opened and the lane has fewer than max_in_flight requests on their way, and
  /// whoever brings it to `limit_rows` sends it at once. `context`
  /// makes the batch's context when this call opens one.
  ///
  /// A merged request refused with INVALID_ARGUMENT (a NaN, say) may be refused for another caller's rows:
  /// each of its callers then sends its own rows alone, so that only the one at fault gets the error.
  Status run(const std::string& key, const std::function<std::shared_ptr<const void>()>& context,
             const double* momenta, int64_t rows, int64_t row_doubles, int64_t limit_rows,
             const OutputBuffers& outputs, Deadline deadline, std::string* model_version,
             const std::function<Status()>& alone);

  Counters counters() const;

 private:
  std::shared_ptr<CoalescedBatch> take(CoalescerLane& lane);  // under mutex_
  void dispatch(std::shared_ptr<CoalescedBatch> batch);          // without mutex_
  void complete(const std::shared_ptr<CoalescedBatch>& batch, const Status& status, const std::string& version,
                const BatchOutputs& outputs);

  std::chrono::nanoseconds window_;
  Send send_;
  int max_in_flight_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, CoalescerLane> lanes_;  // never erased: references stay valid
  Counters counters_;
};

}  // namespace calsurr::detail

#endif
