package dev.tether.core.protocol;

/**
 * What a session did. {@code connectionsOpen}, {@code bytesIn} and {@code bytesOut} are 0 where
 * the daemon does not measure them (sockets handed to the program run past it).
 */
public record Counters(long connectionsOpen, long connectionsTotal, long bytesIn, long bytesOut, long filesRead,
        long dnsLookups) {
    public static final Counters ZERO = new Counters(0, 0, 0, 0, 0, 0);
}
