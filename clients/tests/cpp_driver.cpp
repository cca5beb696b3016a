// The C++ client under test, driven by tests/clients/test_cpp_client.py: momenta from a binary file, the
// outputs to another, one JSON line on stdout saying how it went. Never crashes on a failed call: the status
// is reported and the exit code is 1.
//
//   calsurr_cpp_driver MODE ADDRESS MODEL N_PARTICLES [IN OUT] [--option value]...
//   MODE: predict | into | async | future | coalesce (IN OUT), card | info
//   IN: n_events * n_particles * 4 float64; OUT: 5 arrays of n_events float64 (mean, sigma_stat, sigma_syst,
//   sigma_tot, the status code of each row's call)
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "calsurr/client.hpp"

namespace {

std::string json_string(const std::string& text) {
  std::ostringstream out;
  out << '"';
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out << '\\' << c;
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out << escaped;
    } else {
      out << c;
    }
  }
  out << '"';
  return out.str();
}

std::vector<double> read_doubles(const std::string& path) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) throw std::runtime_error("cannot read " + path);
  const auto bytes = static_cast<std::size_t>(file.tellg());
  std::vector<double> values(bytes / sizeof(double));
  file.seekg(0);
  file.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(double)));
  return values;
}

std::string read_text(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot read " + path);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

void write_doubles(const std::string& path, const std::vector<double>& values) {
  std::ofstream file(path, std::ios::binary);
  const auto bytes = static_cast<std::streamsize>(values.size() * sizeof(double));
  file.write(reinterpret_cast<const char*>(values.data()), bytes);
  if (!file) throw std::runtime_error("cannot write " + path);
}

struct Outcome {
  calsurr::Status status;
  std::string extra;  // more JSON fields, ",\"key\":value"
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0) {
      if (arg == "--warmup") {
        flags[arg] = "1";
      } else if (i + 1 < argc) {
        flags[arg] = argv[++i];
      }
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() < 4) {
    std::fprintf(stderr, "usage: %s MODE ADDRESS MODEL N_PARTICLES [IN OUT] [--option value]...\n", argv[0]);
    return 2;
  }
  const std::string mode = positional[0], address = positional[1], model = positional[2];
  const int n_particles = std::stoi(positional[3]);
  auto flag = [&](const char* name, double fallback) {
    auto found = flags.find(name);
    return found == flags.end() ? fallback : std::stod(found->second);
  };

  calsurr::ClientOptions options;
  options.timeout_seconds = flag("--timeout", options.timeout_seconds);
  options.retry.max_attempts = static_cast<int>(flag("--max-attempts", options.retry.max_attempts));
  options.retry.initial_backoff_seconds = flag("--initial-backoff", options.retry.initial_backoff_seconds);
  options.chunk_rows = static_cast<int64_t>(flag("--chunk-rows", 0));
  options.max_in_flight = static_cast<int>(flag("--in-flight", options.max_in_flight));
  options.coalesce_window_us = flag("--window-us", options.coalesce_window_us);
  options.coalesce_max_rows = static_cast<int64_t>(flag("--coalesce-max-rows", options.coalesce_max_rows));
  if (flags.count("--token")) options.bearer_token = flags["--token"];
  try {  // TLS: --ca FILE (the CA to trust), with --cert FILE --key FILE for mutual TLS
    if (flags.count("--ca")) {
      options.tls.enabled = true;
      options.tls.root_certificates_pem = read_text(flags["--ca"]);
    }
    if (flags.count("--cert")) options.tls.client_certificate_pem = read_text(flags["--cert"]);
    if (flags.count("--key")) options.tls.client_key_pem = read_text(flags["--key"]);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 2;
  }

  std::vector<double> momenta;
  int64_t n_events = 0;
  const bool with_files =
      mode == "predict" || mode == "into" || mode == "async" || mode == "future" || mode == "coalesce";
  try {
    if (with_files) {
      if (positional.size() < 6) throw std::runtime_error("mode " + mode + " needs IN and OUT");
      momenta = read_doubles(positional[4]);
      n_events = static_cast<int64_t>(momenta.size()) / (int64_t{n_particles} * 4);
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s\n", error.what());
    return 2;
  }

  std::vector<double> out(static_cast<std::size_t>(n_events) * 5, 0.0);
  const calsurr::OutputBuffers buffers{out.data(), out.data() + n_events, out.data() + 2 * n_events,
                                       out.data() + 3 * n_events};
  double* codes = out.data() + 4 * n_events;
  auto copy_out = [&](const calsurr::Prediction& prediction) {
    const std::size_t bytes = static_cast<std::size_t>(n_events) * sizeof(double);
    if (prediction.size() != static_cast<std::size_t>(n_events)) throw std::runtime_error("wrong prediction size");
    std::memcpy(buffers.mean, prediction.mean.data(), bytes);
    std::memcpy(buffers.sigma_stat, prediction.sigma_stat.data(), bytes);
    std::memcpy(buffers.sigma_syst, prediction.sigma_syst.data(), bytes);
    std::memcpy(buffers.sigma_tot, prediction.sigma_tot.data(), bytes);
  };
  Outcome outcome;
  double seconds = 0;
  calsurr::ClientStats stats;
  try {
    calsurr::Client client(address, options);
    if (flags.count("--warmup") && n_events > 0) {  // metadata fetched and cached, the channel connected
      calsurr::CallOptions patient;
      patient.timeout_seconds = 30;
      client.predict(model, momenta.data(), 1, n_particles, patient);
    }
    const auto start = std::chrono::steady_clock::now();
    try {
      if (mode == "predict") {  // Client::predict, the outputs copied out of the Prediction
        calsurr::Prediction prediction = client.predict(model, momenta.data(), n_events, n_particles);
        copy_out(prediction);
        outcome.extra = ",\"model_version\":" + json_string(prediction.model_version);
      } else if (mode == "into") {  // Client::predict_into the caller's arrays, --repeat times (timing)
        const int repeat = static_cast<int>(flag("--repeat", 1));
        for (int r = 0; r < repeat; ++r) client.predict_into(model, momenta.data(), n_events, n_particles, buffers);
      } else if (mode == "async") {
        std::promise<calsurr::Status> done;
        client.predict_async(model, momenta.data(), n_events, n_particles,
                             [&](calsurr::Status status, calsurr::Prediction prediction) {
                               if (status.ok()) copy_out(prediction);
                               done.set_value(status);
                             });
        const calsurr::Status status = done.get_future().get();
        if (!status.ok()) throw calsurr::Error(status);
      } else if (mode == "future") {
        auto future = client.predict_async(model, momenta, n_particles);
        copy_out(future.get());
      } else if (mode == "coalesce") {
        const int threads = static_cast<int>(flag("--threads", 64));
        const int64_t per_call = static_cast<int64_t>(flag("--rows-per-call", 1));
        const int64_t blocks = (n_events + per_call - 1) / per_call;
        std::mutex first_error_mutex;
        calsurr::Status first_error;
        std::atomic<int> ready{0};
        std::vector<std::thread> callers;
        for (int t = 0; t < threads; ++t) {
          callers.emplace_back([&, t] {
            ready.fetch_add(1);
            while (ready.load() < threads) std::this_thread::yield();
            for (int64_t block = t; block < blocks; block += threads) {
              const int64_t row = block * per_call, rows = std::min(per_call, n_events - row);
              calsurr::StatusCode code = calsurr::StatusCode::OK;
              try {
                client.predict_into(model, momenta.data() + row * n_particles * 4, rows, n_particles,
                                    {buffers.mean + row, buffers.sigma_stat + row, buffers.sigma_syst + row,
                                     buffers.sigma_tot + row});
              } catch (const calsurr::Error& error) {
                code = error.code();
                std::lock_guard<std::mutex> lock(first_error_mutex);
                if (first_error.ok()) first_error = error.status();
              }
              for (int64_t r = row; r < row + rows; ++r) codes[r] = static_cast<double>(code);
            }
          });
        }
        for (auto& caller : callers) caller.join();
        if (!first_error.ok()) throw calsurr::Error(first_error);
      } else if (mode == "card") {
        const std::string card = client.card_json(model);
        outcome.extra = ",\"card\":" + json_string(card);
      } else if (mode == "info") {
        const calsurr::ModelInfo info = client.model_info(model);
        std::ostringstream extra;
        extra << ",\"n_particles\":" << info.n_particles() << ",\"chunk_rows\":" << info.chunk_rows
              << ",\"preferred_batch_size\":" << info.preferred_batch_size
              << ",\"max_batch_size\":" << info.max_batch_size << ",\"input\":" << json_string(info.input_name)
              << ",\"datatype\":" << json_string(info.input_datatype)
              << ",\"ready\":" << (client.is_model_ready(model) ? "true" : "false")
              << ",\"live\":" << (client.is_live() ? "true" : "false");
        outcome.extra = extra.str();
      } else {
        std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
      }
    } catch (const calsurr::Error& error) {
      outcome.status = error.status();
    }
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stats = client.stats();
  } catch (const calsurr::Error& error) {  // the constructor: options, address
    outcome.status = error.status();
  }
  if (mode != "coalesce")
    for (int64_t r = 0; r < n_events; ++r) codes[r] = static_cast<double>(outcome.status.code());
  if (with_files) {
    try {
      write_doubles(positional[5], out);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "%s\n", error.what());
      return 2;
    }
  }
  std::printf(
      "{\"code\":%d,\"name\":%s,\"message\":%s,\"rows\":%lld,\"seconds\":%.6f,\"infer_requests\":%llu,"
      "\"retries\":%llu,\"coalesced_calls\":%llu,\"coalesced_requests\":%llu%s}\n",
      static_cast<int>(outcome.status.code()), json_string(calsurr::status_name(outcome.status.code())).c_str(),
      json_string(outcome.status.message()).c_str(), static_cast<long long>(n_events), seconds,
      static_cast<unsigned long long>(stats.infer_requests), static_cast<unsigned long long>(stats.retries),
      static_cast<unsigned long long>(stats.coalesced_calls), static_cast<unsigned long long>(stats.coalesced_requests),
      outcome.extra.c_str());
  return outcome.status.ok() ? 0 : 1;
}
