package dev.tether.core.protocol;

/** A process that joined a session; {@code since} in seconds since the epoch. */
public record ProcessInfo(long pid, String executable, long since, boolean skipped) {}
