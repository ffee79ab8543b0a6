//! Contract suites (filled in by the persistence work).
