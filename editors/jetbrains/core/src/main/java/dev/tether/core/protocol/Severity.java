package dev.tether.core.protocol;

import com.google.gson.annotations.SerializedName;

/** {@code error} stops the launch; {@code warning} and {@code info} do not. */
public enum Severity {
    @SerializedName("error") ERROR,
    @SerializedName("warning") WARNING,
    @SerializedName("info") INFO
}
