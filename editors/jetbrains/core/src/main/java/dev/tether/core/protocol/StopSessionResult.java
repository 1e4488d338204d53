package dev.tether.core.protocol;

/** {@code tether/stopSession}: {@code false} when no live session had that id. */
public record StopSessionResult(boolean stopped) {}
