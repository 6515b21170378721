//! `kubectl_complete-mesh_register`: completion helper kubectl runs for `kubectl mesh-register <TAB>`.

#[path = "shim.rs"]
mod shim;

fn main() -> std::process::ExitCode {
    shim::run("kubectl-mesh_register")
}
