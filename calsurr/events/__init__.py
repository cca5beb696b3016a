"""Event generation with a surrogate: phase space -> surrogate (stage 1) -> exact |M|^2 (stage 2) -> LHE.

The generator-side tool of calsurr (`calsurr events`), built on the physics code (numpy), the client or
in-process onnxruntime, and the model card; it never imports torch.

    phase_space   flat RAMBO inside the cuts, and VEGAS (the `vegas` package) over a (3n-4)-dimensional map
    surrogates    one interface for a served model (gRPC), an exported model in-process, and test doubles
    unweighting   standard, two-stage and uncertainty-gated unweighting; overweights kept as event weights
    bookkeeping   cross sections in pb with MC errors, efficiencies, Kish factor, timings, the f_eff cost model
    colour_flow   a leading-colour colour flow per event, chosen by the squared colour-ordered amplitudes
    lhe           Les Houches Event files, version 3
    observables   leading-gluon pT and rapidity, min Delta R, min s_ij/s; histograms and their chi2 comparison
    plots         mplhep figures with ratio panels
"""
