// The JetBrains plugin: `core` (plain Java, tested by build.sh without the SDK) and `plugin` (the
// IntelliJ glue, built where the IntelliJ Platform can be downloaded: `gradle :plugin:buildPlugin`).
rootProject.name = "tether-jetbrains"
include("core", "plugin")
