package dev.tether.core.protocol;

import com.google.gson.annotations.SerializedName;

/** {@code starting}: the agent starts; {@code ready}: processes may join; then {@code failed} or {@code ended}. */
public enum SessionState {
    @SerializedName("starting") STARTING,
    @SerializedName("ready") READY,
    @SerializedName("failed") FAILED,
    @SerializedName("ended") ENDED;

    public boolean isLive() {
        return this == STARTING || this == READY;
    }

    public String wire() {
        return name().toLowerCase(java.util.Locale.ROOT);
    }
}
