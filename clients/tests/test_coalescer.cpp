// The coalescer with a fake transport: many threads, each asking for its own rows, get exactly their own
// answers back, point by point; merged requests never exceed the limit; a refused merge is re-sent per caller;
// a caller whose deadline passes leaves, and its arrays are not written afterwards.
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

#include "coalescer.hpp"
#include "unit.hpp"

using namespace calsurr;
using namespace calsurr::detail;

namespace {

constexpr int64_t ROW = 16;  // doubles per row: 4 particles * 4

// What the fake model answers for one row: functions of that row alone, so a row sent back to the wrong caller
// or in the wrong place shows.
double f_mean(const double* row) {
  double sum = 0;
  for (int i = 0; i < ROW; ++i) sum += row[i] * (i + 1);
  return sum;
}
double f_stat(const double* row) { return row[0] - row[15]; }
double f_syst(const double* row) { return row[1] * 3; }
double f_tot(const double* row) { return row[2] + 0.5; }

void answer(const double* rows, int64_t n, std::vector<double> (&out)[4]) {
  for (auto& o : out) o.resize(static_cast<std::size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    const double* row = rows + r * ROW;
    out[0][r] = f_mean(row);
    out[1][r] = f_stat(row);
    out[2][r] = f_syst(row);
    out[3][r] = f_tot(row);
  }
}

// A transport that answers each merged request from a thread of its own after `delay`, records the batch sizes,
// refuses a batch holding a NaN (as the server does) and can hold every answer until released.
struct FakeTransport {
  std::chrono::microseconds delay{200};
  std::mutex mutex;
  std::vector<int64_t> batch_rows;
  std::vector<std::vector<int>> batch_callers;  // per batch, the thread each row came from (fill())
  std::vector<std::thread> threads;
  std::atomic<bool> hold{false};

  Coalescer::Send send() {
    return [this](std::shared_ptr<CoalescedBatch> batch, Coalescer::Complete complete) {
      std::lock_guard<std::mutex> lock(mutex);
      batch_rows.push_back(batch->rows);
      std::vector<int> callers;
      const auto* rows = reinterpret_cast<const double*>(batch->input.data());
      for (int64_t r = 0; r < batch->rows; ++r) callers.push_back(static_cast<int>(rows[r * ROW] / 1000));
      batch_callers.push_back(callers);
      threads.emplace_back([this, batch, complete] {
        std::this_thread::sleep_for(delay);
        while (hold) std::this_thread::sleep_for(std::chrono::microseconds(100));
        std::vector<double> rows(batch->input.size() / sizeof(double));
        std::memcpy(rows.data(), batch->input.data(), batch->input.size());
        for (double x : rows) {
          if (std::isnan(x)) {
            complete(Status(StatusCode::INVALID_ARGUMENT, "input 'momenta' holds NaN"), "1", {});
            return;
          }
        }
        std::vector<double> out[4];
        answer(rows.data(), batch->rows, out);
        complete(Status(), "1", {out[0].data(), out[1].data(), out[2].data(), out[3].data()});
      });
    };
  }
  void join() {
    std::vector<std::thread> all;
    {
      std::lock_guard<std::mutex> lock(mutex);
      all.swap(threads);
    }
    for (auto& t : all) t.join();
  }
};

// The caller sending its own rows (an idle lane, or a refused merge): the same fake model, inline.
Status alone_answer(const double* momenta, int64_t rows, const OutputBuffers& out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int i = 0; i < ROW; ++i)
      if (std::isnan(momenta[r * ROW + i])) return Status(StatusCode::INVALID_ARGUMENT, "input 'momenta' holds NaN");
  std::vector<double> o[4];
  answer(momenta, rows, o);
  std::memcpy(out.mean, o[0].data(), rows * sizeof(double));
  std::memcpy(out.sigma_stat, o[1].data(), rows * sizeof(double));
  std::memcpy(out.sigma_syst, o[2].data(), rows * sizeof(double));
  std::memcpy(out.sigma_tot, o[3].data(), rows * sizeof(double));
  return {};
}

std::shared_ptr<const void> no_context() { return nullptr; }

// Distinct momenta per (thread, round, row): the answer tells whose they were.
void fill(std::vector<double>& momenta, int thread, int round) {
  for (std::size_t i = 0; i < momenta.size(); ++i) momenta[i] = 1000.0 * thread + round + 1e-3 * static_cast<double>(i);
}

struct Run {
  int64_t mismatches = 0;
  int64_t failures = 0;
};

// `alone_delay`: how long a call sent by itself takes (a request's round trip).
Run hammer(Coalescer& coalescer, int threads, int rounds, int64_t rows_per_call, int64_t limit,
           std::chrono::microseconds alone_delay = std::chrono::microseconds(200)) {
  const Deadline deadline = Deadline::none();
  std::atomic<int64_t> mismatches{0}, failures{0};
  std::atomic<int> ready{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&, t] {
      std::vector<double> momenta(static_cast<std::size_t>(rows_per_call * ROW));
      std::vector<double> out[4];
      for (auto& o : out) o.assign(static_cast<std::size_t>(rows_per_call), std::nan(""));
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();
      for (int round = 0; round < rounds; ++round) {
        fill(momenta, t, round);
        const OutputBuffers buffers{out[0].data(), out[1].data(), out[2].data(), out[3].data()};
        std::string version;
        const Status status = coalescer.run("lane", no_context, momenta.data(), rows_per_call, ROW, limit, buffers,
                                            deadline, &version,
                                            [&] {
                                              std::this_thread::sleep_for(alone_delay);
                                              return alone_answer(momenta.data(), rows_per_call, buffers);
                                            });
        if (!status.ok()) {
          failures.fetch_add(1);
          continue;
        }
        for (int64_t r = 0; r < rows_per_call; ++r) {  // point by point: this caller's own rows
          const double* row = momenta.data() + r * ROW;
          if (out[0][r] != f_mean(row) || out[1][r] != f_stat(row) || out[2][r] != f_syst(row) ||
              out[3][r] != f_tot(row))
            mismatches.fetch_add(1);
        }
      }
    });
  }
  for (auto& c : callers) c.join();
  return {mismatches.load(), failures.load()};
}

}  // namespace

TEST(coalescer_64_threads_each_get_their_own_point) {
  FakeTransport transport;
  Coalescer coalescer(std::chrono::microseconds(100), transport.send());
  const Run run = hammer(coalescer, 64, 50, 1, 4096);
  transport.join();
  CHECK_EQ(run.mismatches, int64_t{0});
  CHECK_EQ(run.failures, int64_t{0});
  const auto counters = coalescer.counters();
  CHECK_EQ(counters.calls, uint64_t{64 * 50});
  uint64_t merged_rows = 0;
  for (auto rows : transport.batch_rows) merged_rows += static_cast<uint64_t>(rows);
  CHECK_EQ(merged_rows + counters.alone, uint64_t{64 * 50});  // every row went out exactly once
  CHECK(counters.batches > 0 && merged_rows > counters.batches);  // some were merged
}

TEST(coalescer_merges_most_calls_within_a_long_window) {
  FakeTransport transport;
  transport.delay = std::chrono::microseconds(1000);
  Coalescer coalescer(std::chrono::microseconds(5000), transport.send());
  const Run run = hammer(coalescer, 64, 10, 1, 4096, std::chrono::microseconds(1000));
  transport.join();
  CHECK_EQ(run.mismatches, int64_t{0});
  const auto counters = coalescer.counters();
  CHECK(counters.batches + counters.alone <= counters.calls / 8);
}

TEST(coalescer_several_rows_per_call_and_a_small_limit) {
  FakeTransport transport;
  Coalescer coalescer(std::chrono::microseconds(500), transport.send());
  const Run run = hammer(coalescer, 16, 20, 3, 10);
  transport.join();
  CHECK_EQ(run.mismatches, int64_t{0});
  CHECK_EQ(run.failures, int64_t{0});
  for (auto rows : transport.batch_rows) CHECK(rows <= 10 && rows % 3 == 0);
}

TEST(coalescer_idle_lane_sends_at_once) {
  FakeTransport transport;
  Coalescer coalescer(std::chrono::seconds(10), transport.send());  // a window that would show
  std::vector<double> momenta(ROW, 1.0), out[4];
  for (auto& o : out) o.resize(1);
  const OutputBuffers buffers{out[0].data(), out[1].data(), out[2].data(), out[3].data()};
  const auto start = Clock::now();
  for (int i = 0; i < 3; ++i) {
    const Status status = coalescer.run("lane", no_context, momenta.data(), 1, ROW, 4096, buffers, Deadline::none(),
                                        nullptr, [&] { return alone_answer(momenta.data(), 1, buffers); });
    CHECK(status.ok());
  }
  CHECK(Clock::now() - start < std::chrono::seconds(1));
  CHECK_EQ(coalescer.counters().alone, uint64_t{3});
  CHECK_EQ(coalescer.counters().batches, uint64_t{0});
  CHECK_EQ(out[0][0], f_mean(momenta.data()));
}

TEST(coalescer_nan_fails_only_its_own_caller) {
  FakeTransport transport;
  transport.delay = std::chrono::microseconds(2000);
  Coalescer coalescer(std::chrono::microseconds(3000), transport.send());
  const int threads = 16;
  std::vector<Status> statuses(threads);
  std::vector<std::vector<double>> means(threads, std::vector<double>(1, 0.0));
  std::vector<std::vector<double>> momenta(threads, std::vector<double>(ROW, 0.0));
  std::vector<std::thread> callers;
  std::atomic<int> ready{0};
  for (int t = 0; t < threads; ++t) {
    fill(momenta[t], t, 0);
    if (t == 5) momenta[t][3] = std::numeric_limits<double>::quiet_NaN();
    callers.emplace_back([&, t] {
      std::vector<double> other(3);
      const OutputBuffers buffers{means[t].data(), &other[0], &other[1], &other[2]};
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();
      statuses[t] = coalescer.run("lane", no_context, momenta[t].data(), 1, ROW, 4096, buffers, Deadline::none(),
                                  nullptr, [&] { return alone_answer(momenta[t].data(), 1, buffers); });
    });
  }
  for (auto& c : callers) c.join();
  transport.join();
  for (int t = 0; t < threads; ++t) {
    if (t == 5) {
      CHECK(statuses[t].code() == StatusCode::INVALID_ARGUMENT);
    } else {
      CHECK(statuses[t].ok());
      CHECK_EQ(means[t][0], f_mean(momenta[t].data()));
    }
  }
}

TEST(coalescer_deadline_leaves_and_arrays_stay_untouched) {
  FakeTransport transport;
  transport.hold = true;
  Coalescer coalescer(std::chrono::microseconds(100), transport.send());
  // Keep the lane busy with one caller, so the next ones merge and wait on the held transport.
  std::vector<double> momenta(ROW, 2.0);
  std::vector<double> busy(4);
  std::thread first([&] {
    const OutputBuffers buffers{&busy[0], &busy[1], &busy[2], &busy[3]};
    coalescer.run("lane", no_context, momenta.data(), 1, ROW, 4096, buffers, Deadline::none(), nullptr, [&] {
      while (transport.hold) std::this_thread::sleep_for(std::chrono::microseconds(100));
      return alone_answer(momenta.data(), 1, buffers);
    });
  });
  while (coalescer.counters().alone == 0) std::this_thread::yield();
  auto kept = std::make_unique<std::vector<double>>(4, -7.0);  // outlives the call: must stay -7
  const OutputBuffers buffers{&(*kept)[0], &(*kept)[1], &(*kept)[2], &(*kept)[3]};
  const auto start = Clock::now();
  const Status status = coalescer.run("lane", no_context, momenta.data(), 1, ROW, 4096, buffers,
                                      Deadline{Clock::now() + std::chrono::milliseconds(50)}, nullptr,
                                      [&] { return alone_answer(momenta.data(), 1, buffers); });
  const auto waited = Clock::now() - start;
  CHECK(status.code() == StatusCode::DEADLINE_EXCEEDED);
  CHECK(waited >= std::chrono::milliseconds(45) && waited < std::chrono::seconds(5));
  transport.hold = false;
  first.join();
  transport.join();
  for (double x : *kept) CHECK_EQ(x, -7.0);
  CHECK_EQ(busy[0], f_mean(momenta.data()));
}

TEST(coalescer_lanes_do_not_mix) {
  FakeTransport transport;
  Coalescer coalescer(std::chrono::microseconds(2000), transport.send());
  std::atomic<int64_t> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 8; ++t) {
    callers.emplace_back([&, t] {
      std::vector<double> momenta(ROW);
      fill(momenta, t, 0);
      std::vector<double> out(4);
      const OutputBuffers buffers{&out[0], &out[1], &out[2], &out[3]};
      const std::string lane = t % 2 ? "odd" : "even";
      coalescer.run(lane, no_context, momenta.data(), 1, ROW, 4096, buffers, Deadline::none(), nullptr,
                    [&] { return alone_answer(momenta.data(), 1, buffers); });
      if (out[0] != f_mean(momenta.data())) wrong.fetch_add(1);
    });
  }
  for (auto& c : callers) c.join();
  transport.join();
  CHECK_EQ(wrong.load(), int64_t{0});
  for (const auto& batch : transport.batch_callers)
    for (int caller : batch) CHECK_EQ(caller % 2, batch.front() % 2);
}

TEST(coalescer_gathers_while_the_lane_is_full) {
  FakeTransport transport;
  Coalescer coalescer(std::chrono::microseconds(100), transport.send(), 1);
  std::atomic<bool> hold_alone{true};
  std::vector<double> first_momenta(ROW, 3.0), first_out(4);
  std::thread first([&] {
    const OutputBuffers buffers{&first_out[0], &first_out[1], &first_out[2], &first_out[3]};
    coalescer.run("lane", no_context, first_momenta.data(), 1, ROW, 4096, buffers, Deadline::none(), nullptr, [&] {
      while (hold_alone) std::this_thread::sleep_for(std::chrono::microseconds(100));
      return alone_answer(first_momenta.data(), 1, buffers);
    });
  });
  while (coalescer.counters().alone == 0) std::this_thread::yield();
  const int threads = 10;
  std::vector<std::thread> callers;
  std::atomic<int64_t> wrong{0};
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&, t] {
      std::vector<double> momenta(ROW), out(4);
      fill(momenta, t + 1, 0);
      const OutputBuffers buffers{&out[0], &out[1], &out[2], &out[3]};
      auto never_alone = [] { return Status(StatusCode::INTERNAL, "sent alone"); };
      const Status status = coalescer.run("lane", no_context, momenta.data(), 1, ROW, 4096, buffers,
                                          Deadline::none(), nullptr, never_alone);
      if (!status.ok() || out[0] != f_mean(momenta.data())) wrong.fetch_add(1);
    });
  }
  while (coalescer.counters().calls < 1 + threads) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // 200 windows: still no room in the lane
  {
    std::lock_guard<std::mutex> lock(transport.mutex);
    CHECK(transport.batch_rows.empty());
  }
  hold_alone = false;
  first.join();
  for (auto& c : callers) c.join();
  transport.join();
  CHECK_EQ(wrong.load(), int64_t{0});
  CHECK_EQ(transport.batch_rows.size(), std::size_t{1});
  if (!transport.batch_rows.empty()) CHECK_EQ(transport.batch_rows[0], int64_t{threads});
}
