"""What the tests and the benchmarks share: synthetic catalogs (synth), aligner scenes with known truth
(aligner_synth) and Gaia bulk files in the archive's layouts (gaia_fixtures)."""
