package dev.tether.core.protocol;

import java.util.List;

/** The agent serving a session. */
public record AgentInfo(String version, int targetPid, List<String> capabilities) {}
