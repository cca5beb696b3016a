/* A generator's use of calsurr from C: the same as predict.cpp through calsurr.h.
 *
 *   calsurr_predict_c ADDRESS [MODEL] [N_EVENTS]      (defaults: gg_gg, 8)
 */
#include <calsurr/calsurr.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s ADDRESS [MODEL] [N_EVENTS]\n", argv[0]);
    return 2;
  }
  const char* model = argc > 2 ? argv[2] : "gg_gg";
  const int n_events = argc > 3 ? atoi(argv[3]) : 8;

  calsurr_options options;
  calsurr_options_init(&options);
  options.timeout_seconds = 10;
  calsurr_client* client = NULL;
  int n_particles = 0;
  if (calsurr_connect(argv[1], &options, &client) != CALSURR_OK ||
      calsurr_model_particles(client, model, &n_particles) != CALSURR_OK) {
    fprintf(stderr, "calsurr: %s\n", calsurr_last_error());
    calsurr_close(client);
    return 1;
  }
  if (n_particles != 4) {
    fprintf(stderr, "this example makes 2 -> 2 events; model '%s' takes %d particles\n", model, n_particles);
    calsurr_close(client);
    return 2;
  }
  double* momenta = malloc(sizeof(double) * 16 * (size_t)n_events);
  double* out = malloc(sizeof(double) * 4 * (size_t)n_events);
  const double e = 500.0;
  for (int i = 0; i < n_events; ++i) {
    const double theta = 0.3 + 2.5 * (i + 0.5) / n_events, phi = 0.7 * i;
    const double p[16] = {e, 0, 0, e, e, 0, 0, -e,
                          e, e * sin(theta) * cos(phi), e * sin(theta) * sin(phi), e * cos(theta),
                          e, -e * sin(theta) * cos(phi), -e * sin(theta) * sin(phi), -e * cos(theta)};
    for (int k = 0; k < 16; ++k) momenta[16 * i + k] = p[k];
  }
  double *mean = out, *sigma_stat = out + n_events, *sigma_syst = out + 2 * n_events, *sigma_tot = out + 3 * n_events;
  int status = calsurr_predict(client, model, momenta, n_events, n_particles, mean, sigma_stat, sigma_syst, sigma_tot);
  if (status != CALSURR_OK) {
    fprintf(stderr, "calsurr: status %d: %s\n", status, calsurr_last_error());
  } else {
    for (int i = 0; i < n_events; ++i)
      printf("%2d  |M|^2 = %.6g +- %.3g (stat %.3g, syst %.3g)\n", i, mean[i], sigma_tot[i], sigma_stat[i],
             sigma_syst[i]);
  }
  free(momenta);
  free(out);
  calsurr_close(client);
  return status == CALSURR_OK ? 0 : 1;
}
