// The BLHA2 order file of a one-loop-provider run, read and answered line by line (the contract).
//
// Binoth Les Houches Accord 2 (arXiv:1308.3462): the generator writes an order file, one `Keyword value` or
// process line (`21 21 -> 21 21`) a line, `#` starting a comment; the OLP echoes each line into the contract
// file with `| OK`, `| Error: ...`, or for a process `| 1 <id>` (one subprocess id, counted from 1). This part
// knows no network: whether a model exists and what it takes comes from a lookup the caller passes, so the
// parser is unit tested without a server (tests/test_order_file.cpp).
#ifndef CALSURR_OLP_ORDER_FILE_HPP
#define CALSURR_OLP_ORDER_FILE_HPP

#include <functional>
#include <istream>
#include <optional>
#include <string>
#include <vector>

namespace calsurr::olp {

/// Where a process line goes when neither CALSURR_SERVER nor `Extra CalsurrServer` says: `calsurr serve`'s port.
inline constexpr const char* DEFAULT_SERVER = "127.0.0.1:8001";

/// What the server says of a model: particles per event (its input [-1, n, 4]) and its card's process ("gg_gg").
struct ModelInfo {
  int n_particles = 0;
  std::string process;
};

/// Look a model up on a server: "" and `info` filled, or the reason it cannot be used (server down, unknown
/// model, ...), which becomes the process line's `| Error: <reason>`.
using ModelLookup = std::function<std::string(const std::string& server, const std::string& model, ModelInfo& info)>;

/// One accepted process line: its id (from 1, in order), where it is evaluated and how many legs it has.
struct Subprocess {
  int id = 0;
  std::string server;
  std::string model;
  int n_legs = 0;
};

struct Contract {
  std::vector<std::string> lines;  ///< the contract file, one entry per order-file line, without newlines
  std::vector<Subprocess> subprocesses;
  bool ok = true;                   ///< no line was answered with an error
  bool couplings_stripped = false;  ///< `OperationMode CouplingsStrippedOff`: results at g_s = 1 whatever alpha_s
};

/// Answer an order file. `server_override` (CALSURR_SERVER; "" for none) beats every `Extra CalsurrServer`.
/// Lines that already carry an answer (a contract given back) are read up to their `|` and answered afresh.
Contract answer_order_file(std::istream& order, const std::string& server_override, const ModelLookup& lookup);

/// A card's process name as PDG codes, incoming first: "gg_ggg" -> ({21, 21}, {21, 21, 21}); nothing for a
/// name we cannot map (g is the only parton the served models have).
std::optional<std::pair<std::vector<int>, std::vector<int>>> process_pdg_codes(const std::string& card_process);

/// The string value of a top-level key of a JSON object ("process" of a model card), or nothing.
std::optional<std::string> json_string_field(const std::string& json, const std::string& key);

}  // namespace calsurr::olp

#endif
