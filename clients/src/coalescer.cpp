#include "coalescer.hpp"

#include <cstring>

namespace calsurr::detail {

namespace {

void copy_rows(double* to, const void* from, int64_t offset, int64_t rows) {
  if (to == nullptr || from == nullptr) return;
  const auto* bytes = static_cast<const char*>(from) + offset * static_cast<int64_t>(sizeof(double));
  std::memcpy(to, bytes, static_cast<std::size_t>(rows) * sizeof(double));
}

}  // namespace

Status Coalescer::run(const std::string& key, const std::function<std::shared_ptr<const void>()>& context,
                      const double* momenta, int64_t rows, int64_t row_doubles, int64_t limit_rows,
                      const OutputBuffers& outputs, Deadline deadline, std::string* model_version,
                      const std::function<Status()>& alone) {
  auto slot = std::make_shared<CoalescedSlot>();
  slot->rows = rows;
  slot->outputs = outputs;
  std::shared_ptr<CoalescedBatch> full;  // a batch this call must send before it waits
  std::shared_ptr<CoalescedBatch> due;   // the batch this call leads, when its window has passed
  {
    std::unique_lock<std::mutex> lock(mutex_);
    ++counters_.calls;
    CoalescerLane& lane = lanes_[key];
    if (!lane.open && lane.in_flight == 0) {
      ++lane.in_flight;
      ++counters_.alone;
      lock.unlock();
      Status status = alone();
      lock.lock();
      --lane.in_flight;
      lane.window.notify_all();  // a leader may be waiting for the lane to have room
      return status;
    }
    if (lane.open && lane.open->rows + rows > limit_rows) {
      full = take(lane);
    }
    bool leader = false;
    if (!lane.open) {
      lane.open = std::make_shared<CoalescedBatch>();
      lane.open->lane = &lane;
      lane.open->row_doubles = row_doubles;
      lane.open->deadline = deadline;
      lane.open->context = context();
      leader = true;
    }
    std::shared_ptr<CoalescedBatch> batch = lane.open;
    slot->offset = batch->rows;
    batch->input.append(reinterpret_cast<const char*>(momenta),
                        static_cast<std::size_t>(rows * row_doubles) * sizeof(double));
    batch->rows += rows;
    batch->deadline = Deadline::later(batch->deadline, deadline);
    batch->slots.push_back(slot);
    if (batch->rows >= limit_rows) {
      due = take(lane);
    } else if (leader) {
      const auto window_end = Clock::now() + window_;
      if (full) {  // send the full one first rather than after this window
        lock.unlock();
        dispatch(std::move(full));
        lock.lock();
      }
      lane.window.wait_until(lock, window_end, [&] { return lane.open != batch; });
      // While the lane has max_in_flight requests on their way, the batch keeps gathering: under load the
      // requests grow instead of queueing at the server, and each one that comes back makes room for the next.
      lane.window.wait(lock, [&] { return lane.open != batch || lane.in_flight < max_in_flight_; });
      if (lane.open == batch) due = take(lane);
    }
  }
  if (full) dispatch(std::move(full));
  if (due) dispatch(std::move(due));

  std::unique_lock<std::mutex> lock(slot->mutex);
  if (deadline.is_none()) {
    slot->answered.wait(lock, [&] { return slot->done; });
  } else if (!slot->answered.wait_until(lock, deadline.at, [&] { return slot->done; })) {
    slot->abandoned = true;
    return Status(StatusCode::DEADLINE_EXCEEDED,
                  "Deadline Exceeded: the deadline passed while a coalesced request was on its way");
  }
  if (slot->merged && slot->status.code() == StatusCode::INVALID_ARGUMENT) {
    lock.unlock();
    {
      std::lock_guard<std::mutex> counting(mutex_);
      ++counters_.alone;
    }
    return alone();
  }
  if (model_version != nullptr) *model_version = slot->model_version;
  return slot->status;
}

std::shared_ptr<CoalescedBatch> Coalescer::take(CoalescerLane& lane) {
  std::shared_ptr<CoalescedBatch> batch = std::move(lane.open);
  lane.open.reset();
  ++lane.in_flight;
  ++counters_.batches;
  lane.window.notify_all();
  return batch;
}

void Coalescer::dispatch(std::shared_ptr<CoalescedBatch> batch) {
  auto keep = batch;
  send_(std::move(batch), [this, keep](const Status& status, const std::string& version, const BatchOutputs& out) {
    complete(keep, status, version, out);
  });
}

void Coalescer::complete(const std::shared_ptr<CoalescedBatch>& batch, const Status& status,
                         const std::string& version, const BatchOutputs& out) {
  for (const auto& slot : batch->slots) {
    {
      std::lock_guard<std::mutex> lock(slot->mutex);
      if (!slot->abandoned && status.ok()) {
        copy_rows(slot->outputs.mean, out.mean, slot->offset, slot->rows);
        copy_rows(slot->outputs.sigma_stat, out.sigma_stat, slot->offset, slot->rows);
        copy_rows(slot->outputs.sigma_syst, out.sigma_syst, slot->offset, slot->rows);
        copy_rows(slot->outputs.sigma_tot, out.sigma_tot, slot->offset, slot->rows);
      }
      slot->status = status;
      slot->model_version = version;
      slot->merged = batch->slots.size() > 1;
      slot->done = true;
    }
    slot->answered.notify_all();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  --batch->lane->in_flight;
  batch->lane->window.notify_all();
}

Coalescer::Counters Coalescer::counters() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return counters_;
}

}  // namespace calsurr::detail
