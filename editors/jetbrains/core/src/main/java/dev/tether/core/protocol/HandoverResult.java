package dev.tether.core.protocol;

/** {@code tether/handover}: {@code accepted} when the daemon had no live session and stops now. */
public record HandoverResult(boolean accepted, String version, long sessions) {}
