package dev.tether.core.protocol;

/** {@code route}: {@code local}, {@code remote}, {@code remote-writable} or {@code not-found}; {@code rule}: what decided. */
public record PathDecision(String route, String rule) {}
