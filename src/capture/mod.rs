//! Packet sources: capture files (pcap, pcapng) and, later, live interfaces.
