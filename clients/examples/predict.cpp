// A generator's use of calsurr from C++: 2 -> 2 phase-space points at sqrt(s) = 1 TeV, their |M|^2 and its
// uncertainties from the served surrogate, and the model card.
//
//   calsurr_predict ADDRESS [MODEL] [N_EVENTS]      (defaults: gg_gg, 8)
#include <calsurr/client.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s ADDRESS [MODEL] [N_EVENTS]\n", argv[0]);
    return 2;
  }
  const std::string address = argv[1], model = argc > 2 ? argv[2] : "gg_gg";
  const int n_events = argc > 3 ? std::stoi(argv[3]) : 8;
  try {
    calsurr::ClientOptions options;  // the defaults: 30 s deadline, 5 attempts on UNAVAILABLE, coalescing on
    options.timeout_seconds = 10;
    calsurr::Client client(address, options);
    const int n_particles = client.model_info(model).n_particles();
    if (n_particles != 4) {
      std::fprintf(stderr, "this example makes 2 -> 2 events; model '%s' takes %d particles\n", model.c_str(),
                   n_particles);
      return 2;
    }
    // (E, px, py, pz) per particle, incoming along +z and -z, outgoing back to back at angle theta.
    const double e = 500.0;
    std::vector<double> momenta;
    for (int i = 0; i < n_events; ++i) {
      const double theta = 0.3 + 2.5 * (i + 0.5) / n_events, phi = 0.7 * i;
      const double px = e * std::sin(theta) * std::cos(phi), py = e * std::sin(theta) * std::sin(phi),
                   pz = e * std::cos(theta);
      momenta.insert(momenta.end(), {e, 0, 0, e, e, 0, 0, -e, e, px, py, pz, e, -px, -py, -pz});
    }
    const calsurr::Prediction p = client.predict(model, momenta, n_particles);
    std::printf("model %s version %s: %zu events\n", model.c_str(), p.model_version.c_str(), p.size());
    for (std::size_t i = 0; i < p.size(); ++i) {
      std::printf("%2zu  |M|^2 = %.6g +- %.3g (stat %.3g, syst %.3g)\n", i, p.mean[i], p.sigma_tot[i],
                  p.sigma_stat[i], p.sigma_syst[i]);
    }
    const std::string card = client.card_json(model);
    std::printf("card: %zu bytes of JSON\n", card.size());
  } catch (const calsurr::Error& error) {  // the gRPC status code and the server's message
    std::fprintf(stderr, "calsurr: %s (code %d)\n", error.what(), static_cast<int>(error.code()));
    return 1;
  }
  return 0;
}
