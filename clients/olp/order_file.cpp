// The BLHA2 order file answered: see order_file.hpp, and the README's "Fortran and BLHA" for the keywords.
#include "order_file.hpp"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace calsurr::olp {
namespace {

const char* const UNSUPPORTED = "Error: unsupported";
constexpr int GLUON = 21;

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1);
}

std::vector<std::string> words(const std::string& text) {
  std::istringstream stream(text);
  std::vector<std::string> out;
  for (std::string word; stream >> word;) out.push_back(word);
  return out;
}

std::optional<std::vector<int>> integers(const std::string& text) {
  std::vector<int> out;
  for (const auto& word : words(text)) {
    std::size_t used = 0;
    try {
      out.push_back(std::stoi(word, &used));
    } catch (const std::exception&) {
      return std::nullopt;
    }
    if (used != word.size()) return std::nullopt;
  }
  return out;
}

std::string joined(const std::vector<int>& codes) {
  std::string out;
  for (int code : codes) out += (out.empty() ? "" : " ") + std::to_string(code);
  return out;
}

// Keywords whose values do not change a massless pure-QCD tree |M|^2 (schemes, masses of particles the
// served processes do not have, the IR regularisation of poles a tree does not have): accepted as they are.
bool without_effect(const std::string& keyword) {
  static const char* const names[] = {"model",           "modelfile",
                                      "irregularisation", "irregularization",
                                      "ewscheme",        "widthscheme",
                                      "massiveparticles", "massiveparticlescheme",
                                      "lightmassiveparticles", "subdividesubprocess"};
  return std::any_of(std::begin(names), std::end(names), [&](const char* name) { return keyword == name; });
}

// The state the keyword lines build up for the process lines after them.
struct Settings {
  bool tree = false;              // AmplitudeType Tree seen (and no unsupported one after it)
  std::string amplitude_type;     // as written, for the message of a process under another type
  std::optional<int> qcd_power;   // CouplingPower QCD / AlphasPower
  std::string server;             // Extra CalsurrServer
  std::string model;              // Extra CalsurrModel
};

std::string answer_keyword(const std::vector<std::string>& tokens, Settings& settings, Contract& contract) {
  const std::string keyword = lower(tokens[0]);
  const std::string value = tokens.size() > 1 ? lower(tokens[1]) : "";
  if (keyword == "interfaceversion") return value == "blha2" && tokens.size() == 2 ? "OK" : UNSUPPORTED;
  if (keyword == "amplitudetype") {
    settings.amplitude_type = tokens.size() > 1 ? tokens[1] : "";
    settings.tree = value == "tree" && tokens.size() == 2;
    return settings.tree ? "OK" : UNSUPPORTED;
  }
  if (keyword == "correctiontype") return value == "qcd" && tokens.size() == 2 ? "OK" : UNSUPPORTED;
  if (keyword == "couplingpower" || keyword == "alphaspower" || keyword == "alphapower") {
    // CouplingPower QCD n (BLHA2) or AlphasPower n / AlphaPower n (BLHA1 spellings)
    const bool qcd = keyword == "alphaspower" || (keyword == "couplingpower" && value == "qcd");
    const bool qed = keyword == "alphapower" || (keyword == "couplingpower" && (value == "qed" || value == "ew"));
    const std::size_t at = keyword == "couplingpower" ? 2 : 1;
    const auto power = tokens.size() == at + 1 ? integers(tokens[at]) : std::nullopt;
    if (!power || (!qcd && !qed)) return "Error: expected CouplingPower QCD <n>";
    if (qed) return power->at(0) == 0 ? "OK" : UNSUPPORTED;  // the served processes are pure QCD
    settings.qcd_power = power->at(0);
    return "OK";
  }
  if (keyword == "operationmode") {
    if (value == "couplingsstrippedoff" && tokens.size() == 2) {
      contract.couplings_stripped = true;
      return "OK";
    }
    return UNSUPPORTED;
  }
  if (keyword == "extra") {
    const std::string key = tokens.size() > 1 ? lower(tokens[1]) : "";
    if (key != "calsurrserver" && key != "calsurrmodel") return UNSUPPORTED;
    if (tokens.size() != 3) return "Error: expected Extra " + tokens[1] + " <value>";
    (key == "calsurrserver" ? settings.server : settings.model) = tokens[2];
    return "OK";
  }
  if (without_effect(keyword)) return "OK";
  return UNSUPPORTED;
}

std::string answer_process(const std::string& text, const Settings& settings, const std::string& server_override,
                           const ModelLookup& lookup, Contract& contract) {
  const auto arrow = text.find("->");
  const auto incoming = integers(text.substr(0, arrow));
  const auto outgoing = integers(text.substr(arrow + 2));
  if (!incoming || !outgoing || incoming->empty() || outgoing->empty())
    return "Error: a process is PDG codes, e.g. 21 21 -> 21 21";
  if (!settings.tree) {
    if (settings.amplitude_type.empty()) return "Error: no AmplitudeType before the process";
    return "Error: unsupported AmplitudeType " + settings.amplitude_type;
  }
  if (settings.model.empty()) return "Error: no Extra CalsurrModel before the process";
  const std::string server =
      !server_override.empty() ? server_override : !settings.server.empty() ? settings.server : DEFAULT_SERVER;
  ModelInfo info;
  if (const std::string problem = lookup(server, settings.model, info); !problem.empty()) return "Error: " + problem;
  const int n_legs = static_cast<int>(incoming->size() + outgoing->size());
  const std::string about = "model " + settings.model + " (process " + info.process + ", " +
                            std::to_string(info.n_particles) + " particles)";
  if (n_legs != info.n_particles)
    return "Error: the process has " + std::to_string(n_legs) + " legs, " + about;
  const auto codes = process_pdg_codes(info.process);
  if (!codes) return "Error: cannot map the process of " + about + " to PDG codes";
  if (codes->first != *incoming || codes->second != *outgoing)
    return "Error: the process is not " + joined(codes->first) + " -> " + joined(codes->second) + " of " + about;
  if (settings.qcd_power && *settings.qcd_power != n_legs - 2)
    return "Error: CouplingPower QCD " + std::to_string(*settings.qcd_power) + ", a tree of " +
           std::to_string(n_legs) + " gluons has " + std::to_string(n_legs - 2);
  const int id = static_cast<int>(contract.subprocesses.size()) + 1;
  contract.subprocesses.push_back({id, server, settings.model, n_legs});
  return "1 " + std::to_string(id);
}

// JSON, as far as a card's top-level string field needs: skip any value, read a string.
struct JsonReader {
  const std::string& text;
  std::size_t at = 0;

  void space() {
    while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at]))) ++at;
  }
  bool take(char c) {
    space();
    if (at < text.size() && text[at] == c) return ++at, true;
    return false;
  }
  std::optional<std::string> string() {
    if (!take('"')) return std::nullopt;
    std::string out;
    while (at < text.size()) {
      char c = text[at++];
      if (c == '"') return out;
      if (c == '\\') {
        if (at >= text.size()) return std::nullopt;
        c = text[at++];
        static const std::string from = "\"\\/bfnrt", to = "\"\\/\b\f\n\r\t";
        if (const auto k = from.find(c); k != std::string::npos) {
          out += to[k];
        } else if (c == 'u' && at + 4 <= text.size()) {
          unsigned code = 0;
          for (int k = 0; k < 4; ++k) {
            const char h = static_cast<char>(std::tolower(static_cast<unsigned char>(text[at++])));
            if (!std::isxdigit(static_cast<unsigned char>(h))) return std::nullopt;
            code = 16 * code + static_cast<unsigned>(h <= '9' ? h - '0' : h - 'a' + 10);
          }
          out += code < 0x80 ? static_cast<char>(code) : '?';  // names are ASCII; the rest only needs skipping
        } else {
          return std::nullopt;
        }
      } else {
        out += c;
      }
    }
    return std::nullopt;
  }
  bool skip_value() {
    space();
    if (at >= text.size()) return false;
    if (text[at] == '"') return string().has_value();
    if (text[at] == '{' || text[at] == '[') {
      const char close = text[at] == '{' ? '}' : ']';
      ++at;
      if (take(close)) return true;
      do {
        if (close == '}' && !(string() && take(':'))) return false;
        if (!skip_value()) return false;
      } while (take(','));
      return take(close);
    }
    const std::size_t start = at;
    while (at < text.size() && (std::isalnum(static_cast<unsigned char>(text[at])) || text[at] == '-' ||
                                text[at] == '+' || text[at] == '.'))
      ++at;
    return at > start;
  }
};

}  // namespace

std::optional<std::string> json_string_field(const std::string& json, const std::string& key) {
  JsonReader reader{json};
  if (!reader.take('{') || reader.take('}')) return std::nullopt;
  do {
    const auto name = reader.string();
    if (!name || !reader.take(':')) return std::nullopt;
    if (*name == key) {
      reader.space();
      return reader.string();
    }
    if (!reader.skip_value()) return std::nullopt;
  } while (reader.take(','));
  return std::nullopt;
}

std::optional<std::pair<std::vector<int>, std::vector<int>>> process_pdg_codes(const std::string& card_process) {
  const auto cut = card_process.find('_');
  if (cut == std::string::npos || cut == 0 || cut + 1 >= card_process.size()) return std::nullopt;
  std::pair<std::vector<int>, std::vector<int>> codes;
  for (std::size_t i = 0; i < card_process.size(); ++i) {
    if (i == cut) continue;
    if (card_process[i] != 'g') return std::nullopt;
    (i < cut ? codes.first : codes.second).push_back(GLUON);
  }
  return codes;
}

Contract answer_order_file(std::istream& order, const std::string& server_override, const ModelLookup& lookup) {
  Contract contract;
  Settings settings;
  for (std::string line; std::getline(order, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto hash = line.find('#');
    const std::string comment = hash == std::string::npos ? "" : line.substr(hash);
    std::string content = line.substr(0, hash);
    if (const auto bar = content.find('|'); bar != std::string::npos) content.resize(bar);  // a contract again
    const std::string text = trim(content);
    if (text.empty()) {
      contract.lines.push_back(trim(comment).empty() ? "" : comment);
      continue;
    }
    const std::string answer = text.find("->") != std::string::npos
                                   ? answer_process(text, settings, server_override, lookup, contract)
                                   : answer_keyword(words(text), settings, contract);
    if (answer.rfind("Error", 0) == 0) contract.ok = false;
    std::string out = text + " | " + answer;
    if (!comment.empty()) out += " " + comment;
    contract.lines.push_back(out);
  }
  return contract;
}

}  // namespace calsurr::olp
