//! A simulated Bambu Lab printer.
