// The C++ client under load, for bench/clients.py: rows/s, latency percentiles and the client's own CPU, one
// JSON line on stdout.
//
//   calsurr_client_bench loop  ADDRESS MODEL N_PARTICLES ROWS_FILE --threads T --batch B --seconds S [--warmup S]
//   calsurr_client_bench array ADDRESS MODEL N_PARTICLES ROWS_FILE --rows N [--repeat R]
//   options of every mode: --window-us W (0: coalescer off), --in-flight K, --chunk-rows C, --latencies FILE
//   (every call's seconds as float64, for percentiles over several runs)
//
// ROWS_FILE holds a few rows of float64 momenta (n_particles * 4 each), tiled to as many rows as a call needs.
// loop: T threads each call predict_into with B rows, back to back, for S seconds after S warm-up seconds (one
// call per thread at least): with B <= 64 from several threads that is the coalescer's case, with T = 1 the
// synchronous call. array: predict on N rows, R times (a large array: chunks pipelined, max_in_flight at once),
// after one warm-up call of one chunk. Latency is per call. CPU is this process's user + system time over the
// measured part (getrusage).
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "calsurr/client.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

std::vector<double> tiled_rows(const std::string& path, int n_particles, int64_t rows) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) throw std::runtime_error("cannot read " + path);
  const auto bytes = static_cast<std::size_t>(file.tellg());
  std::vector<double> base(bytes / sizeof(double));
  file.seekg(0);
  file.read(reinterpret_cast<char*>(base.data()), static_cast<std::streamsize>(base.size() * sizeof(double)));
  const std::size_t row = static_cast<std::size_t>(n_particles) * 4;
  if (base.empty() || base.size() % row != 0) throw std::runtime_error(path + " holds no whole rows");
  std::vector<double> tiled(static_cast<std::size_t>(rows) * row);
  for (std::size_t i = 0; i < tiled.size(); ++i) tiled[i] = base[i % base.size()];
  return tiled;
}

double percentile_ms(std::vector<double>& seconds, double q) {
  if (seconds.empty()) return -1;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(seconds.size() - 1) + 0.5);
  std::nth_element(seconds.begin(), seconds.begin() + static_cast<std::ptrdiff_t>(k), seconds.end());
  return seconds[k] * 1e3;
}

std::string json_escaped(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  }
  return out;
}

struct Measured {
  std::vector<double> latencies;  // seconds per call
  int64_t rows = 0;
  int64_t errors = 0;
  double seconds = 0;
  double cpu = 0;
  std::string first_error;
};

Measured loop(calsurr::Client& client, const std::string& model, int n_particles, const std::vector<double>& rows,
              int threads, int64_t batch, double seconds, double warmup) {
  Measured measured;
  std::mutex mutex;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<int> warm{0};
  std::atomic<bool> counting{false};
  Clock::time_point stop_at;
  double cpu0 = 0;
  Clock::time_point start;
  std::vector<std::thread> callers;
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&, t] {
      std::vector<double> mean(batch), stat(batch), syst(batch), tot(batch);
      const calsurr::OutputBuffers out{mean.data(), stat.data(), syst.data(), tot.data()};
      // Each thread starts at its own row, so the rows a merged request carries differ.
      const double* momenta = rows.data() + static_cast<std::size_t>(t % 16) * n_particles * 4;
      std::vector<double> latencies;
      latencies.reserve(1 << 16);
      int64_t errors = 0;
      std::string first_error;
      bool warmed = false;
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      for (;;) {
        const bool keep = counting.load();
        if (keep && Clock::now() >= stop_at) break;
        const auto t0 = Clock::now();
        try {
          client.predict_into(model, momenta, batch, n_particles, out);
        } catch (const calsurr::Error& error) {
          ++errors;
          if (first_error.empty()) first_error = error.what();
          if (errors > 1000) break;
          continue;
        }
        if (keep) {
          latencies.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        } else if (!warmed) {
          warmed = true;
          warm.fetch_add(1);
        }
      }
      std::lock_guard<std::mutex> lock(mutex);
      measured.latencies.insert(measured.latencies.end(), latencies.begin(), latencies.end());
      measured.errors += errors;
      if (measured.first_error.empty()) measured.first_error = first_error;
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  const auto warm_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup));
  go.store(true);
  while (Clock::now() < warm_until || warm.load() < threads) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (Clock::now() > warm_until + std::chrono::seconds(60)) break;  // a thread that never answers: give up
  }
  cpu0 = cpu_seconds();
  start = Clock::now();
  stop_at = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  counting.store(true);
  for (auto& caller : callers) caller.join();
  measured.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  measured.cpu = cpu_seconds() - cpu0;
  measured.rows = static_cast<int64_t>(measured.latencies.size()) * batch;
  return measured;
}

Measured array(calsurr::Client& client, const std::string& model, int n_particles, const std::vector<double>& rows,
               int64_t n, int repeat) {
  Measured measured;
  const int64_t chunk = client.model_info(model).chunk_rows;
  client.predict(model, rows.data(), std::min(n, chunk), n_particles);  // warm-up: channel, metadata, a run
  const double cpu0 = cpu_seconds();
  const auto start = Clock::now();
  for (int r = 0; r < repeat; ++r) {
    const auto t0 = Clock::now();
    try {
      calsurr::Prediction prediction = client.predict(model, rows.data(), n, n_particles);
      if (static_cast<int64_t>(prediction.size()) != n) throw calsurr::Error(calsurr::StatusCode::INTERNAL, "short");
      measured.latencies.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      measured.rows += n;
    } catch (const calsurr::Error& error) {
      ++measured.errors;
      if (measured.first_error.empty()) measured.first_error = error.what();
    }
  }
  measured.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  measured.cpu = cpu_seconds() - cpu0;
  return measured;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0 && i + 1 < argc) {
      flags[arg] = argv[++i];
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 5 || (positional[0] != "loop" && positional[0] != "array")) {
    std::fprintf(stderr, "usage: %s loop|array ADDRESS MODEL N_PARTICLES ROWS_FILE [--option value]...\n", argv[0]);
    return 2;
  }
  auto flag = [&](const char* name, double fallback) {
    const auto found = flags.find(name);
    return found == flags.end() ? fallback : std::stod(found->second);
  };
  const std::string mode = positional[0], address = positional[1], model = positional[2];
  const int n_particles = std::stoi(positional[3]);
  calsurr::ClientOptions options;
  options.coalesce_window_us = flag("--window-us", options.coalesce_window_us);
  options.max_in_flight = static_cast<int>(flag("--in-flight", options.max_in_flight));
  options.chunk_rows = static_cast<int64_t>(flag("--chunk-rows", 0));
  options.timeout_seconds = flag("--timeout", 600);
  const int threads = static_cast<int>(flag("--threads", 1));
  const int64_t batch = static_cast<int64_t>(flag("--batch", 1));
  const int64_t n = static_cast<int64_t>(flag("--rows", 1000000));
  try {
    calsurr::Client client(address, options);
    const std::vector<double> rows = tiled_rows(positional[4], n_particles, mode == "array" ? n : batch + 16);
    Measured m = mode == "array" ? array(client, model, n_particles, rows, n, static_cast<int>(flag("--repeat", 1)))
                                 : loop(client, model, n_particles, rows, threads, batch, flag("--seconds", 3),
                                        flag("--warmup", 0.5));
    if (flags.count("--latencies")) {
      std::ofstream file(flags["--latencies"], std::ios::binary);
      file.write(reinterpret_cast<const char*>(m.latencies.data()),
                 static_cast<std::streamsize>(m.latencies.size() * sizeof(double)));
    }
    const calsurr::ClientStats stats = client.stats();
    const std::size_t calls = m.latencies.size();
    const double p50 = percentile_ms(m.latencies, 0.50), p99 = percentile_ms(m.latencies, 0.99);
    std::printf(
        "{\"mode\":\"%s\",\"threads\":%d,\"batch\":%lld,\"calls\":%zu,\"rows\":%lld,\"seconds\":%.6f,"
        "\"rows_per_s\":%.3f,\"p50_ms\":%.6f,\"p99_ms\":%.6f,\"cpu_s\":%.6f,\"errors\":%lld,\"first_error\":\"%s\","
        "\"infer_requests\":%llu,\"coalesced_calls\":%llu,\"coalesced_requests\":%llu,\"window_us\":%g,"
        "\"max_in_flight\":%d,\"chunk_rows\":%lld}\n",
        mode.c_str(), mode == "array" ? 1 : threads, static_cast<long long>(mode == "array" ? n : batch), calls,
        static_cast<long long>(m.rows), m.seconds, m.seconds > 0 ? static_cast<double>(m.rows) / m.seconds : 0.0, p50,
        p99, m.cpu, static_cast<long long>(m.errors), json_escaped(m.first_error).c_str(),
        static_cast<unsigned long long>(stats.infer_requests), static_cast<unsigned long long>(stats.coalesced_calls),
        static_cast<unsigned long long>(stats.coalesced_requests), options.coalesce_window_us, options.max_in_flight,
        static_cast<long long>(client.model_info(model).chunk_rows));
    return m.errors == 0 ? 0 : 1;
  } catch (const std::exception& error) {
    std::printf("{\"mode\":\"%s\",\"errors\":1,\"first_error\":\"%s\"}\n", mode.c_str(),
                json_escaped(error.what()).c_str());
    return 1;
  }
}
