//! Threads and queues: reader → workers → output.
