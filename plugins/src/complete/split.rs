//! `kubectl_complete-mesh_split`: completion helper kubectl runs for `kubectl mesh-split <TAB>`.

#[path = "shim.rs"]
mod shim;

fn main() -> std::process::ExitCode {
    shim::run("kubectl-mesh_split")
}
