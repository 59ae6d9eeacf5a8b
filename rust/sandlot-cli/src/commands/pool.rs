use sandlot_core::{Client, Result};

use crate::args::{PoolCommand, PoolDefinition};
use crate::commands::create::user_namespace_flag;
use crate::printer::Printer;

pub async fn run(client: &Client, printer: &Printer, command: PoolCommand) -> Result<i32> {
    match command {
        PoolCommand::Create(args) => {
            let spec = args.spec()?;
            warn_without_user_namespace(client, printer, &args.pool).await;
            let mut pool = client
                .create_pool(&spec)
                .await
                .map_err(user_namespace_flag)?;
            if let Some(wait) = args.pool.wait {
                pool = client.fill_pool(&pool.name, Some(wait)).await?;
            }
            printer.created_pool(&pool);
        }
        PoolCommand::Update(args) => {
            let (spec, keep_size) = args.spec()?;
            warn_without_user_namespace(client, printer, &args.pool).await;
            let mut pool = client
                .update_pool(&spec, keep_size)
                .await
                .map_err(user_namespace_flag)?;
            if let Some(wait) = args.pool.wait {
                pool = client.fill_pool(&pool.name, Some(wait)).await?;
            }
            printer.created_pool(&pool);
        }
        PoolCommand::Resize(args) => {
            let mut pool = client.resize_pool(&args.name, args.size).await?;
            if let Some(wait) = args.wait {
                pool = client.fill_pool(&pool.name, Some(wait)).await?;
            }
            printer.pools(&[pool]);
        }
        PoolCommand::Fill(args) => {
            let pool = client
                .fill_pool(&args.name, args.wait)
                .await
                .map_err(user_namespace_flag)?;
            printer.pools(&[pool]);
        }
        PoolCommand::Get(args) => printer.pool(&client.get_pool(&args.name).await?),
        PoolCommand::List => printer.pools(&client.list_pools().await?),
        PoolCommand::Delete(args) => {
            let ended = client.delete_pool(&args.name).await?;
            printer.pool_deleted(&args.name, ended);
        }
    }
    Ok(0)
}

/// Shows the warning `sandlot create` shows when its sandbox would run
/// without the user namespace it gets by default; the pool's warm sandboxes
/// are made as that sandbox would be.
async fn warn_without_user_namespace(client: &Client, printer: &Printer, pool: &PoolDefinition) {
    let Ok(spec) = pool.sandbox_spec() else {
        return;
    };
    // An error here is the pool create's to report.
    if let Ok(Some(notice)) = client.user_namespace_fallback(&spec).await {
        printer.warning(&notice);
        client.user_namespace_fallback_shown();
    }
}
