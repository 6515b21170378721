//! `kubectl_complete-mesh_link`: completion helper kubectl runs for `kubectl mesh-link <TAB>`.

#[path = "shim.rs"]
mod shim;

fn main() -> std::process::ExitCode {
    shim::run("kubectl-mesh_link")
}
