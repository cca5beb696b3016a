// libcalsurr_olp: a BLHA2 one-loop provider (arXiv:1308.3462) whose tree-level |M|^2 comes from a served
// calsurr surrogate, so that a generator that loads an OLP (Herwig and Whizard dlopen one; MG5_aMC and
// POWHEG link one) uses the surrogate unchanged.
//
// Exactly four symbols are exported, with C linkage and all arguments by pointer (callable from C, C++ and
// Fortran via bind(C)); everything else is hidden (olp.map):
//   OLP_Start(file, ierr)            read the order file, write the contract <file>.olc, connect; ierr 1 ok, 0 not
//   OLP_Info(name, version, message) "calsurr", the library's version, what to cite
//   OLP_SetParameter(name, re, im, ierr)  alpha_s / alphas: 1 accepted (0 for a value that is not > 0);
//                                    anything else: 2, ignored (the served processes know no other parameter)
//   OLP_EvalSubProcess2(id, pp, mu, rval, acc)  pp: 5 doubles per leg (E, px, py, pz, m) in process order;
//                                    AmplitudeType Tree: rval[0] = |M|^2 (the only entry written, as for any
//                                    BLHA2 Tree), *acc = sigma_tot / |mean|, the surrogate's relative uncertainty
//
// |M|^2 is summed over final and averaged over initial colours and helicities, without the 1/(n-2)! of
// identical final-state gluons, which belongs to the generator. The surrogate is trained at g_s = 1; once
// OLP_SetParameter("alpha_s", a) is called rval[0] carries the couplings, (4 pi a)^(n-2) for n gluons, as
// BLHA2 results do; with `OperationMode CouplingsStrippedOff` it never does. mu is not used (a tree with its
// couplings given has no scale). The masses in pp are not used: the served processes are massless gluons.
//
// Evaluation errors: BLHA2 has no status in OLP_EvalSubProcess2, so a failed evaluation (unknown id, server
// down after the client's retries, a NaN momentum, ...) sets rval[0] = NaN and *acc = DBL_MAX (a generator
// that checks acc against a threshold discards the point) and prints one line to stderr with the reason; after
// MAX_ERROR_LINES such lines further ones are counted, not printed.
//
// Threads: one calsurr client per server address, shared by every thread; OLP_EvalSubProcess2 and
// OLP_SetParameter may be called from any number of threads at once (concurrent single points are merged into
// one request by the client's coalescer). OLP_Start must not run while other calls are in flight.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "calsurr/calsurr.h"
#include "order_file.hpp"

#ifndef CALSURR_OLP_VERSION
#define CALSURR_OLP_VERSION "0.0.0"
#endif

#define CALSURR_OLP_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using calsurr::olp::Contract;
using calsurr::olp::ModelInfo;

constexpr int MAX_ERROR_LINES = 100;
constexpr double PI = 3.14159265358979323846;  // M_PI, which is not standard C++

struct Subprocess {
  calsurr_client* client = nullptr;
  std::string model;
  int n_legs = 0;
};

struct State {
  std::map<std::string, calsurr_client*> clients;  // by server address
  std::vector<Subprocess> subprocesses;            // id - 1
  bool couplings_stripped = false;
};

// Never destroyed: at exit gRPC's own statics may be gone before ours, and the OS frees the rest.
std::shared_mutex& state_mutex() {
  static auto* mutex = new std::shared_mutex;
  return *mutex;
}
State& state() {
  static auto* instance = new State;
  return *instance;
}
std::atomic<double> alpha_s{0.0};  // 0: never set, results at g_s = 1
std::atomic<int> error_lines{0};

const char* status_name(int code) {
  switch (code) {
    case CALSURR_OK: return "OK";
    case CALSURR_CANCELLED: return "CANCELLED";
    case CALSURR_UNKNOWN: return "UNKNOWN";
    case CALSURR_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case CALSURR_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case CALSURR_NOT_FOUND: return "NOT_FOUND";
    case CALSURR_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case CALSURR_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case CALSURR_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case CALSURR_INTERNAL: return "INTERNAL";
    case CALSURR_UNAVAILABLE: return "UNAVAILABLE";
    case CALSURR_UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "status";
  }
}

std::string failure(int code) {
  std::string message = calsurr_last_error();
  std::replace(message.begin(), message.end(), '\n', ' ');  // one contract line, one stderr line
  return std::string(status_name(code)) + " (" + std::to_string(code) + "): " + message;
}

void report(const std::string& line) {
  const int count = error_lines.fetch_add(1);
  if (count < MAX_ERROR_LINES) {
    std::fprintf(stderr, "calsurr OLP: %s\n", line.c_str());
  } else if (count == MAX_ERROR_LINES) {
    std::fprintf(stderr, "calsurr OLP: %d errors printed; further ones are not\n", MAX_ERROR_LINES);
  }
}

void close_clients(State& s) {
  for (auto& [address, client] : s.clients) calsurr_close(client);
  s.clients.clear();
  s.subprocesses.clear();
  s.couplings_stripped = false;
}

// The ModelLookup of the order file: connect once per server, read the model's particles and card process.
std::string look_up(State& s, const std::string& server, const std::string& model, ModelInfo& info) {
  auto found = s.clients.find(server);
  if (found == s.clients.end()) {
    calsurr_client* client = nullptr;
    if (const int code = calsurr_connect(server.c_str(), nullptr, &client); code != CALSURR_OK)
      return "server " + server + ": " + failure(code);
    found = s.clients.emplace(server, client).first;
  }
  calsurr_client* client = found->second;
  const std::string where = "model " + model + " on " + server + ": ";
  if (const int code = calsurr_model_particles(client, model.c_str(), &info.n_particles); code != CALSURR_OK)
    return where + failure(code);
  std::vector<char> card(8192);
  std::size_t needed = 0;
  int code = calsurr_card_json(client, model.c_str(), card.data(), card.size(), &needed);
  if (code == CALSURR_RESOURCE_EXHAUSTED && needed >= card.size()) {
    card.resize(needed + 1);
    code = calsurr_card_json(client, model.c_str(), card.data(), card.size(), &needed);
  }
  if (code != CALSURR_OK) return where + "card: " + failure(code);
  const auto process = calsurr::olp::json_string_field(std::string(card.data(), needed), "process");
  if (!process) return where + "its card has no \"process\"";
  info.process = *process;
  return "";
}

void fail_point(const int* id, double* rval, double* acc, const std::string& why) {
  if (rval) rval[0] = std::nan("");
  if (acc) *acc = DBL_MAX;
  report("OLP_EvalSubProcess2(id " + (id ? std::to_string(*id) : std::string("NULL")) + "): " + why);
}

void copy_name(char* out, std::size_t size, const char* text) {
  if (out) std::snprintf(out, size, "%s", text);
}

}  // namespace

CALSURR_OLP_EXPORT void OLP_Start(const char* file, int* ierr) {
  int result = 0;
  try {
    std::unique_lock lock(state_mutex());
    State& s = state();
    close_clients(s);
    if (!file) throw std::runtime_error("OLP_Start: no order file (NULL)");
    std::ifstream order(file);
    if (!order) throw std::runtime_error(std::string("OLP_Start: cannot read the order file ") + file);
    const char* env = std::getenv("CALSURR_SERVER");
    const Contract contract = calsurr::olp::answer_order_file(
        order, env ? env : "",
        [&s](const std::string& server, const std::string& model, ModelInfo& info) {
          return look_up(s, server, model, info);
        });
    const std::string contract_file = std::string(file) + ".olc";
    std::ofstream out(contract_file, std::ios::trunc);
    for (const auto& line : contract.lines) out << line << '\n';
    out.close();
    if (!out) throw std::runtime_error("OLP_Start: cannot write the contract file " + contract_file);
    for (const auto& sub : contract.subprocesses)
      s.subprocesses.push_back({s.clients.at(sub.server), sub.model, sub.n_legs});
    s.couplings_stripped = contract.couplings_stripped;
    if (!contract.ok) report(std::string("OLP_Start: ") + contract_file + " answers an error; see its '| Error' lines");
    result = contract.ok ? 1 : 0;
  } catch (const std::exception& error) {
    report(error.what());
    result = 0;
  } catch (...) {
    report("OLP_Start: unexpected failure");
    result = 0;
  }
  if (ierr) *ierr = result;
}

CALSURR_OLP_EXPORT void OLP_Info(char olp_name[15], char olp_version[15], char message[255]) {
  copy_name(olp_name, 15, "calsurr");
  copy_name(olp_version, 15, CALSURR_OLP_VERSION);
  copy_name(message, 255,
            "calsurr: calibrated neural-network surrogates of tree-level |M|^2, served over the Open Inference "
            "Protocol; cite the served model's card (calsurr card) for its training and calibration");
}

CALSURR_OLP_EXPORT void OLP_SetParameter(const char* name, const double* re, const double* im, int* ierr) {
  int result = 2;
  if (!name || !re) {
    result = 0;
  } else {
    std::string key(name);
    std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
    if (key == "alpha_s" || key == "alphas") {
      const bool valid = std::isfinite(*re) && *re > 0 && (!im || *im == 0);
      if (valid) alpha_s.store(*re);
      result = valid ? 1 : 0;
    }
  }
  if (ierr) *ierr = result;
}

CALSURR_OLP_EXPORT void OLP_EvalSubProcess2(const int* id, const double* pp, const double* mu, double* rval,
                                            double* acc) {
  (void)mu;
  try {
    if (!id || !pp || !rval || !acc) return fail_point(id, rval, acc, "a NULL argument");
    std::shared_lock lock(state_mutex());
    const State& s = state();
    if (*id < 1 || *id > static_cast<int>(s.subprocesses.size()))
      return fail_point(id, rval, acc,
                        "no such subprocess; OLP_Start gave ids 1 to " + std::to_string(s.subprocesses.size()));
    const Subprocess& sub = s.subprocesses[*id - 1];
    thread_local std::vector<double> momenta;
    momenta.resize(4 * static_cast<std::size_t>(sub.n_legs));
    for (int leg = 0; leg < sub.n_legs; ++leg)
      std::copy(pp + 5 * leg, pp + 5 * leg + 4, momenta.begin() + 4 * leg);  // drop the mass
    double mean = 0, sigma_tot = 0;
    if (const int code = calsurr_predict(sub.client, sub.model.c_str(), momenta.data(), 1, sub.n_legs, &mean,
                                         nullptr, nullptr, &sigma_tot);
        code != CALSURR_OK)
      return fail_point(id, rval, acc, failure(code));
    double couplings = 1.0;
    if (const double a = alpha_s.load(); a > 0 && !s.couplings_stripped) {
      const double g2 = 4.0 * PI * a;
      for (int k = 0; k < sub.n_legs - 2; ++k) couplings *= g2;
    }
    rval[0] = mean * couplings;
    *acc = sigma_tot / std::fabs(mean);
  } catch (const std::exception& error) {
    fail_point(id, rval, acc, error.what());
  } catch (...) {
    fail_point(id, rval, acc, "unexpected failure");
  }
}
